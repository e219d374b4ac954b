//! `http-serve PORT TEXT`: answers every plain-HTTP request on `0.0.0.0:PORT` with `TEXT`,
//! printing `serving PORT` once it listens. A WASI server that the OCI containers of its
//! pod reach on localhost.

use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, text] = args.as_slice() else {
        eprintln!("usage: http-serve PORT TEXT");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(format!("0.0.0.0:{port}")).unwrap_or_else(|e| {
        eprintln!("listening on {port}: {e}");
        std::process::exit(1);
    });
    println!("serving {port}");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = write!(
            stream,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

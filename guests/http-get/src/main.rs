//! `http-get [HOST:PORT]` (default `127.0.0.1:80`): fetches `/` over plain HTTP/1.0 once the
//! server answers, prints the response body and exits 0. A WASI sidecar that reaches a
//! server in its pod on localhost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:80".into());
    let mut stream = loop {
        match TcpStream::connect(&address) {
            Ok(stream) => break stream,
            Err(e) => {
                eprintln!("connecting to {address}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("reading the response");
    let body = response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body);
    print!("{body}");
}

//! A WASI log-shipper sidecar for a pod with an OCI web server (`examples/sidecar-pod.yaml`).
//!
//! `log-shipper PAGE TEXT URL_ADDRESS LOG INTERVAL_MS`: writes `TEXT` to the file `PAGE` (in
//! a volume the web server serves), then every `INTERVAL_MS` fetches `/` from
//! `URL_ADDRESS` (`HOST:PORT`, plain HTTP/1.0) over the pod's localhost and prints
//! `fetched <body>`, and prints each new line of the file `LOG` (which the web server
//! writes) as `shipped <line>`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn fetch(address: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body);
    Ok(body.trim_end().to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [page, text, address, log, interval] = args.as_slice() else {
        eprintln!("usage: log-shipper PAGE TEXT HOST:PORT LOG INTERVAL_MS");
        std::process::exit(2);
    };
    let interval = Duration::from_millis(interval.parse().expect("INTERVAL_MS is a number"));
    let page = std::path::Path::new(page);
    if let Some(dir) = page.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(page, format!("{text}\n")) {
        eprintln!("writing {}: {e}", page.display());
        std::process::exit(1);
    }
    let mut shipped = 0;
    loop {
        match fetch(address) {
            Ok(body) => println!("fetched {body}"),
            Err(e) => println!("fetch failed: {e}"),
        }
        if let Ok(content) = std::fs::read_to_string(log) {
            for line in content.lines().skip(shipped) {
                println!("shipped {line}");
                shipped += 1;
            }
        }
        std::thread::sleep(interval);
    }
}

//! Prints `tick N` forever, every second or every `argv[1]` milliseconds.
//! A long-running guest: tests use it to check that a container can be stopped.

use std::time::Duration;

fn main() {
    let interval_ms = std::env::args()
        .nth(1)
        .map(|a| a.parse::<u64>().unwrap_or_else(|_| panic!("bad interval {a:?}")))
        .unwrap_or(1000);
    for n in 1u64.. {
        println!("tick {n}");
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

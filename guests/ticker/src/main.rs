//! Prints `tick N` forever, every second or every `argv[1]` milliseconds.
//! A long-running guest: tests use it to check that a container can be stopped.
//!
//! Two more modes make it a load that resource metrics (`kubectl top`) must see:
//! `ticker spin` computes without rest (CPU time), and `ticker hold <MiB>` first allocates
//! and touches that much memory, then ticks every second while holding it.

use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("spin") => spin(),
        Some("hold") => {
            let mib = args
                .next()
                .and_then(|a| a.parse::<usize>().ok())
                .expect("usage: ticker hold <MiB>");
            // Filled with non-zero bytes so every page is written, not just reserved;
            // `black_box` keeps the compiler from eliding an allocation nobody reads.
            let held = std::hint::black_box(vec![1u8; mib << 20]);
            println!("holding {} MiB", held.len() >> 20);
            tick(1000);
            drop(held);
        }
        Some(ms) => tick(ms.parse().unwrap_or_else(|_| panic!("bad interval {ms:?}"))),
        None => tick(1000),
    }
}

fn tick(interval_ms: u64) {
    for n in 1u64.. {
        println!("tick {n}");
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

/// Busy work, with a line of output every second so the log shows it is alive.
fn spin() {
    let mut x = 0u64;
    let mut last = Instant::now();
    for n in 1u64.. {
        for i in 0..100_000u64 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        if last.elapsed() >= Duration::from_secs(1) {
            println!("spin {n} {x}");
            last = Instant::now();
        }
    }
}

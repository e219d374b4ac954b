//! Exits with the code given as `argv[1]` (default 1), after one line on stdout
//! and one on stderr, so tests see both streams and a non-zero exit.

fn main() {
    let code: i32 = match std::env::args().nth(1) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("bad exit code {a:?}")),
        None => 1,
    };
    println!("exiting with code {code}");
    eprintln!("this line goes to stderr");
    std::process::exit(code);
}

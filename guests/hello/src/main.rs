//! Prints a greeting, its arguments and two environment variables, then exits 0.
//! Tests read these lines back from the container log to check that argv and env
//! reached the guest.

fn main() {
    println!("Hello from wkube!");
    let args: Vec<String> = std::env::args().collect();
    println!("args: {args:?}");
    for name in ["GREETING", "POD_NAME"] {
        if let Ok(value) = std::env::var(name) {
            println!("{name}={value}");
        }
    }
}

//! The `switchboard` binary.

fn main() -> anyhow::Result<()> {
    println!("switchboard {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}

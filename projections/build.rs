//! Rebuilds the crate when a migration is added or changed: `MIGRATOR`
//! embeds `../migrations` at compile time (sqlx's advice for `migrate!`).

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}

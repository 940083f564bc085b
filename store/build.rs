//! sqlx's `migrate!` embeds the migration files while compiling; without
//! this, adding a migration would not rebuild the crate, and an old
//! migrator would refuse a database a new one had migrated.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/sqlite");
    println!("cargo:rerun-if-changed=../migrations/postgres");
}

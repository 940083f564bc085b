#![no_main]
//! `cargo fuzz run record`: see `ledger_fuzz::record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::record(data);
});

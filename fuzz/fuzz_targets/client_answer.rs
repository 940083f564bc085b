#![no_main]
//! `cargo fuzz run client_answer`: see `ledger_fuzz::client_answer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ledger_fuzz::client_answer(data);
});

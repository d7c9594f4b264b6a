//! Feeds arbitrary bytes to one SST decoder, chosen by the first input byte: data
//! block entries, sealed blocks (trailer + decompression), index, properties, filter
//! and footer. Any panic is a bug; errors are the expected outcome.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terrace::sst::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            // The last up-to-16 bytes double as a seek target.
            let probe = &rest[rest.len().saturating_sub(16)..];
            let _ = fuzzing::decode_block(rest, probe);
        }
        1 => {
            let _ = fuzzing::unseal_block(rest);
        }
        2 => {
            let _ = fuzzing::decode_index_block(rest, u64::from(which) << 10);
        }
        3 => {
            let _ = fuzzing::decode_properties(rest);
        }
        4 => {
            let _ = fuzzing::decode_filter(rest);
        }
        _ => {
            let _ = fuzzing::decode_footer(rest);
        }
    }
});

//! Feeds arbitrary bytes to the metadata decoders, chosen by the first input byte:
//! one version edit (a manifest record's payload), a whole manifest file (replayed
//! with the checked apply), `TERRACE-META`, and the checkpoint objects (`CHECKPOINT`, shard objects, `LATEST`). Any panic is a bug; errors are the
//! expected outcome.

#![no_main]

use libfuzzer_sys::fuzz_target;
use terrace::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let _ = fuzzing::decode_version_edit(rest);
        }
        1 => {
            let _ = fuzzing::replay_manifest(rest);
        }
        2 => {
            let _ = fuzzing::decode_meta(rest);
        }
        3 => {
            let _ = fuzzing::decode_checkpoint(rest);
        }
        4 => {
            let _ = fuzzing::decode_shard_checkpoint(rest);
        }
        _ => {
            let _ = fuzzing::decode_checkpoint_head(rest);
        }
    }
});

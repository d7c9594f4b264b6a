//! The metadata decoders (manifest files, version edits, `TERRACE-META`, checkpoint
//! objects) on damaged
//! and arbitrary bytes: every single-byte flip and every truncation of the golden
//! files, and seeded random inputs, end in a value or an error, never a panic. The
//! same entry points are the cargo-fuzz target `manifest_decode` (engine/fuzz).

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use terrace::fuzzing::{
    decode_checkpoint, decode_checkpoint_head, decode_meta, decode_shard_checkpoint,
    decode_version_edit, replay_manifest,
};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(rel),
    )
    .expect("fixture")
}

fn damage_all_ways(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<usize, String>) -> (u32, u32) {
    let (mut ok, mut err) = (0, 0);
    let mut tally = |r: Result<usize, String>| match r {
        Ok(_) => ok += 1,
        Err(_) => err += 1,
    };
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.to_vec();
            b[i] ^= flip;
            tally(decode(&b));
        }
    }
    for cut in 0..bytes.len() {
        tally(decode(&bytes[..cut]));
    }
    (ok, err)
}

#[test]
fn damaged_manifests_replay_or_fail_cleanly() {
    for name in [
        "manifest/v1-basic.manifest",
        "manifest/v2-basic.manifest",
        "manifest/v3-basic.manifest",
        "manifest/v4-clip.manifest",
    ] {
        let bytes = fixture(name);
        assert!(replay_manifest(&bytes).is_ok(), "{name} must replay");
        let (_, err) = damage_all_ways(&bytes, replay_manifest);
        assert!(err > 0, "{name}: no damage was detected at all");
    }
}

#[test]
fn damaged_metadata_decodes_or_fails_cleanly() {
    for name in [
        "meta/v1-basic.meta",
        "meta/v2-basic.meta",
        "meta/v3-basic.meta",
    ] {
        let bytes = fixture(name);
        assert_eq!(decode_meta(&bytes), Ok(3), "{name}");
        let (ok, _) = damage_all_ways(&bytes, decode_meta);
        // The whole file is under one CRC: a flipped byte is always caught; only
        // truncations that happen to end on a valid CRC could decode, and none do.
        assert_eq!(ok, 0, "damaged {name} decoded");
    }
}

#[test]
fn damaged_checkpoint_objects_decode_or_fail_cleanly() {
    type Decode = fn(&[u8]) -> Result<usize, String>;
    let cases: [(&str, Decode); 5] = [
        ("checkpoint/v1-CHECKPOINT", decode_checkpoint),
        ("checkpoint/v1-shard-0000.ckpt", decode_shard_checkpoint),
        ("checkpoint/v2-shard-0000.ckpt", decode_shard_checkpoint),
        ("checkpoint/v3-shard-0000.ckpt", decode_shard_checkpoint),
        ("checkpoint/v1-LATEST", decode_checkpoint_head),
    ];
    for (name, decode) in cases {
        let bytes = fixture(name);
        assert!(decode(&bytes).is_ok(), "{name} must decode");
        let (ok, _) = damage_all_ways(&bytes, decode);
        // Each object is under one CRC: no damaged copy may decode.
        assert_eq!(ok, 0, "damaged {name} decoded");
    }
}

#[test]
fn random_bytes_never_panic_a_decoder() {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x7e11ace);
    let mut edits_ok = 0;
    for _ in 0..20_000 {
        let len = rng.gen_range(0..200);
        let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Bias toward valid tags so decoding gets past the first byte.
        if let Some(first) = b.first_mut() {
            *first = rng.gen_range(1..=9);
        }
        edits_ok += u32::from(decode_version_edit(&b).is_ok());
        let _ = replay_manifest(&b);
        let _ = decode_meta(&b);
        let _ = decode_checkpoint(&b);
        let _ = decode_shard_checkpoint(&b);
        let _ = decode_checkpoint_head(&b);
    }
    // The generator must reach the decoders' success paths sometimes.
    assert!(edits_ok > 0);
}

//! The one CSV inside an archive zip, read from bytes in memory.
//!
//! An archive zip holds exactly one entry, named like the zip with `.csv`. Anything else (no
//! entry, two, another name, a cut download, a corrupt entry whose CRC-32 fails) is an error
//! that says which, never a panic: the caller refetches the file or ledgers it.
//!
//! Memory: the CSV is read whole, bounded by `max_len` (checked against the size the zip
//! declares and again while reading, so a lying header cannot make it larger).

use std::io::{Cursor, Read};

use zip::ZipArchive;

/// Why a zip's CSV could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnzipError {
    /// Not a readable zip (cut short, not a zip at all): fetch it again.
    #[error("{file}: not a readable zip ({why})")]
    NotAZip {
        /// The zip's name.
        file: String,
        /// What the zip reader said.
        why: String,
    },
    /// Zero or several entries: not an archive file as Binance publishes them.
    #[error("{file}: {count} entries ({names:?}), expected exactly one, {expected:?}")]
    Entries {
        /// The zip's name.
        file: String,
        /// Number of entries.
        count: usize,
        /// Their names (at most 5).
        names: Vec<String>,
        /// The expected entry.
        expected: String,
    },
    /// One entry, but not the expected CSV.
    #[error("{file}: entry is {found:?}, expected {expected:?}")]
    WrongEntry {
        /// The zip's name.
        file: String,
        /// The entry's name.
        found: String,
        /// The expected entry.
        expected: String,
    },
    /// Larger than the caller allows.
    #[error("{file}: entry is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The zip's name.
        file: String,
        /// The limit.
        limit: u64,
    },
    /// Reading or inflating the entry failed (corrupt data, CRC-32 mismatch).
    #[error("{file}: entry {entry:?} is corrupt ({why})")]
    Corrupt {
        /// The zip's name.
        file: String,
        /// The entry's name.
        entry: String,
        /// What the reader said.
        why: String,
    },
}

/// The bytes of the single entry `expected_entry` of the zip `file` (its name, for messages),
/// at most `max_len` bytes.
pub fn read_single_csv(
    zip: &[u8],
    file: &str,
    expected_entry: &str,
    max_len: u64,
) -> Result<Vec<u8>, UnzipError> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).map_err(|e| UnzipError::NotAZip {
        file: file.to_owned(),
        why: e.to_string(),
    })?;
    if archive.len() != 1 {
        return Err(UnzipError::Entries {
            file: file.to_owned(),
            count: archive.len(),
            names: archive
                .file_names()
                .take(5)
                .map(|n| n.map_or_else(|e| format!("<{e}>"), |n| n.into_owned()))
                .collect(),
            expected: expected_entry.to_owned(),
        });
    }
    let corrupt = |entry: &str, why: String| UnzipError::Corrupt {
        file: file.to_owned(),
        entry: entry.to_owned(),
        why,
    };
    let entry = archive
        .by_index(0)
        .map_err(|e| corrupt(expected_entry, e.to_string()))?;
    let name = entry
        .name()
        .map_err(|e| corrupt(expected_entry, e.to_string()))?
        .into_owned();
    if name != expected_entry {
        return Err(UnzipError::WrongEntry {
            file: file.to_owned(),
            found: name,
            expected: expected_entry.to_owned(),
        });
    }
    let too_large = || UnzipError::TooLarge {
        file: file.to_owned(),
        limit: max_len,
    };
    if entry.size() > max_len {
        return Err(too_large());
    }
    // The declared size is a hint for the buffer, never trusted as the bound.
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .take(max_len.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(&name, e.to_string()))?;
    if out.len() as u64 > max_len {
        return Err(too_large());
    }
    Ok(out)
}

/// A zip of `entries` (name, bytes), deflated as Binance's are; for the simulator, benches and
/// tests.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        // Writing into a Vec cannot fail for I/O; only a bad name could, and ours are plain.
        w.start_file(*name, options).expect("start zip entry");
        w.write_all(bytes).expect("write zip entry");
    }
    w.finish().expect("finish zip").into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZIP: &str = "BTCUSDT-trades-2018-02-08.zip";
    const CSV: &str = "BTCUSDT-trades-2018-02-08.csv";
    const BODY: &[u8] =
        b"14764081,7599.00000000,0.22477000,1708.02723000,1518048000016,True,True\n";

    #[test]
    fn the_one_entry_comes_back_byte_for_byte() {
        let zip = zip_of(&[(CSV, BODY)]);
        assert_eq!(read_single_csv(&zip, ZIP, CSV, 1 << 20).unwrap(), BODY);
    }

    #[test]
    fn a_truncated_zip_is_an_error_at_every_cut() {
        let zip = zip_of(&[(CSV, BODY)]);
        for cut in [0, 1, 10, zip.len() / 2, zip.len() - 1] {
            let e = read_single_csv(&zip[..cut], ZIP, CSV, 1 << 20).unwrap_err();
            assert!(matches!(e, UnzipError::NotAZip { .. }), "cut {cut}: {e}");
            assert!(e.to_string().contains(ZIP));
        }
    }

    #[test]
    fn zero_or_two_entries_or_another_name_are_refused() {
        let none = zip_of(&[]);
        let e = read_single_csv(&none, ZIP, CSV, 1 << 20).unwrap_err();
        assert!(matches!(e, UnzipError::Entries { count: 0, .. }), "{e}");
        let two = zip_of(&[(CSV, BODY), ("extra.csv", BODY)]);
        let e = read_single_csv(&two, ZIP, CSV, 1 << 20).unwrap_err();
        assert!(matches!(e, UnzipError::Entries { count: 2, .. }), "{e}");
        assert!(e.to_string().contains("extra.csv"), "{e}");
        let other = zip_of(&[("ETHUSDT-trades-2018-02-08.csv", BODY)]);
        let e = read_single_csv(&other, ZIP, CSV, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ETHUSDT-trades-2018-02-08.csv") && e.contains(CSV),
            "{e}"
        );
    }

    #[test]
    fn a_flipped_byte_in_the_data_is_caught() {
        // Enough rows that the deflated data is long, then flip a byte in its middle: either
        // inflating fails or the CRC-32 check at the end does.
        let body = BODY.repeat(200);
        let mut zip = zip_of(&[(CSV, &body)]);
        let at = 30 + CSV.len() + 40;
        zip[at] ^= 0xff;
        let e = read_single_csv(&zip, ZIP, CSV, 1 << 20).unwrap_err();
        assert!(matches!(e, UnzipError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn the_size_limit_holds() {
        let zip = zip_of(&[(CSV, BODY)]);
        let limit = BODY.len() as u64 - 1;
        let e = read_single_csv(&zip, ZIP, CSV, limit).unwrap_err();
        assert_eq!(
            e,
            UnzipError::TooLarge {
                file: ZIP.into(),
                limit
            }
        );
        assert!(read_single_csv(&zip, ZIP, CSV, BODY.len() as u64).is_ok());
    }
}

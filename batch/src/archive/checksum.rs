//! The `.zip.CHECKSUM` file beside every archive zip, and verifying a zip against it.
//!
//! The body is one `sha256sum` line: `<64 hex digits>  <file name>` (binance-public-data
//! README, "CHECKSUM": "sha256sum -c <zip_file_name.CHECKSUM>"). `sha256sum` writes two spaces
//! (text mode) or a space and `*` (binary mode); both are accepted, with or without a final
//! newline. The file name must be the zip's own: a checksum of another file proves nothing.

use sha2::{Digest, Sha256};

/// A parsed checksum: the digest and the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// SHA-256 of the zip.
    pub sha256: [u8; 32],
    /// The file name the line names (equal to the expected one once parsed).
    pub file_name: String,
}

/// Why a checksum body or a zip was refused. The ledger reason of both is `checksum_mismatch`
/// (see [`super::continuity::HoleReason`]); the variants say what to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// Not `<hex>  <name>`: fetch it again (an HTML error page or a cut body looks like this).
    #[error("checksum body {0:?} is not \"<sha256 hex>  <file name>\"")]
    Shape(String),
    /// The digest has characters that are not hex digits.
    #[error("checksum digest {0:?} is not hexadecimal")]
    BadHex(String),
    /// The digest is hex but not 32 bytes long.
    #[error("checksum digest {raw:?} has {digits} hex digits, a SHA-256 has 64")]
    WrongLength {
        /// The digest as written.
        raw: String,
        /// Its length.
        digits: usize,
    },
    /// The line names another file.
    #[error("checksum names file {found:?}, expected {expected:?}")]
    WrongFileName {
        /// The zip's name.
        expected: String,
        /// What the line names.
        found: String,
    },
    /// The zip's SHA-256 is not the one published: refetch it, then ledger it.
    #[error("{file}: SHA-256 {actual} does not match the published {expected}")]
    Mismatch {
        /// The zip's name.
        file: String,
        /// Published digest, hex.
        expected: String,
        /// Digest of the bytes received, hex.
        actual: String,
    },
}

impl Checksum {
    /// Parses a `.CHECKSUM` body for the zip named `expected_file`.
    pub fn parse(body: &str, expected_file: &str) -> Result<Checksum, ChecksumError> {
        let line = body.strip_suffix('\n').unwrap_or(body);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let shape = || ChecksumError::Shape(body.chars().take(200).collect());
        if line.contains('\n') {
            return Err(shape());
        }
        let (digest, name) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(shape)?;
        if digest.is_empty() || name.is_empty() {
            return Err(shape());
        }
        if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumError::BadHex(digest.chars().take(80).collect()));
        }
        let mut sha256 = [0u8; 32];
        if digest.len() != 64 {
            return Err(ChecksumError::WrongLength {
                raw: digest.chars().take(80).collect(),
                digits: digest.len(),
            });
        }
        // 64 hex digits decode to exactly 32 bytes: checked just above.
        hex::decode_to_slice(digest, &mut sha256)
            .map_err(|_| ChecksumError::BadHex(digest.to_owned()))?;
        if name != expected_file {
            return Err(ChecksumError::WrongFileName {
                expected: expected_file.to_owned(),
                found: name.chars().take(200).collect(),
            });
        }
        Ok(Checksum {
            sha256,
            file_name: name.to_owned(),
        })
    }

    /// Checks `zip` against the digest.
    pub fn verify(&self, zip: &[u8]) -> Result<(), ChecksumError> {
        let actual = Sha256::digest(zip);
        if actual.as_slice() == self.sha256 {
            Ok(())
        } else {
            Err(ChecksumError::Mismatch {
                file: self.file_name.clone(),
                expected: hex::encode(self.sha256),
                actual: hex::encode(actual),
            })
        }
    }
}

/// The body Binance would publish for `zip` named `file_name` (for the simulator and tests).
pub fn body_for(zip: &[u8], file_name: &str) -> String {
    format!("{}  {file_name}\n", hex::encode(Sha256::digest(zip)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const NAME: &str = "BTCUSDT-trades-2018-02-08.zip";
    // SHA-256 of the three bytes "abc" (FIPS 180-2, appendix B.1).
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn a_published_line_parses_and_verifies_the_right_bytes_only() {
        for body in [
            format!("{ABC}  {NAME}\n"),
            format!("{ABC}  {NAME}"),
            format!("{ABC} *{NAME}\r\n"),
        ] {
            let c = Checksum::parse(&body, NAME).unwrap();
            assert_eq!(hex::encode(c.sha256), ABC);
            assert_eq!(c.file_name, NAME);
            assert_eq!(c.verify(b"abc"), Ok(()));
            let e = c.verify(b"abd").unwrap_err().to_string();
            assert!(e.contains(ABC) && e.contains(NAME), "{e}");
        }
    }

    #[test]
    fn body_for_round_trips() {
        let body = body_for(b"abc", NAME);
        assert_eq!(body, format!("{ABC}  {NAME}\n"));
        Checksum::parse(&body, NAME)
            .unwrap()
            .verify(b"abc")
            .unwrap();
    }

    #[rstest]
    #[case(format!("{}  {NAME}", ABC.replace('b', "g")), "not hexadecimal")]
    #[case(format!("{}  {NAME}", &ABC[..62]), "62 hex digits")]
    #[case(format!("{ABC}00  {NAME}"), "66 hex digits")]
    #[case(format!("{ABC}  ETHUSDT-trades-2018-02-08.zip"), "ETHUSDT-trades-2018-02-08.zip")]
    #[case(format!("{ABC} {NAME}"), "is not \"<sha256 hex>")]
    #[case("<html>404 Not Found</html>".to_owned(), "404 Not Found")]
    #[case(String::new(), "is not \"<sha256 hex>")]
    #[case(format!("{ABC}  {NAME}\n{ABC}  {NAME}\n"), "is not \"<sha256 hex>")]
    fn a_broken_body_names_what_is_wrong(#[case] body: String, #[case] want: &str) {
        let e = Checksum::parse(&body, NAME).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

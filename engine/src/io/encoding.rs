//! Text encodings of CSV input: UTF-8 (with or without a byte-order mark)
//! and GBK/GB18030, detected from the file or forced by the caller.
//!
//! Detection reads the file from its start: a byte-order mark decides;
//! otherwise the bytes from the first non-ASCII byte on (up to
//! [`SNIFF_BYTES`] of them, within the first [`SNIFF_LIMIT`] bytes of the
//! file) are checked: valid UTF-8 means UTF-8, anything else GB18030 (a
//! superset of GBK and GB2312). A file that is pure ASCII as far as the
//! detector reads is read as UTF-8.
//!
//! Records are split on the raw bytes and decoded field by field afterwards.
//! That is exact for both encodings: in UTF-8 and in GB18030 every byte of a
//! multi-byte character is outside ASCII except GB18030's digit bytes, so a
//! comma, quote, CR or LF is always a separator. A record that is not valid
//! in the chosen encoding is the caller's to reject (with
//! [`DecodeError`]'s reason); its fields are replaced by a lossy decoding
//! (U+FFFD for the bad bytes) so what is written stays UTF-8, and the reason
//! names the bad bytes.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::{Location, ReadError};

/// The text encodings a CSV input can be read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// UTF-8 (a leading byte-order mark is skipped).
    #[default]
    Utf8,
    /// GB18030, which includes GBK and GB2312 (every GBK file decodes the
    /// same as GB18030).
    Gb18030,
}

impl Encoding {
    /// The encoding's name as reports print it: `utf-8` or `gb18030`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Gb18030 => "gb18030",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The most bytes detection looks at after the first non-ASCII byte.
pub const SNIFF_BYTES: usize = 4 << 20;
/// The most bytes from the start of the file detection reads.
pub const SNIFF_LIMIT: u64 = 64 << 20;

/// The encoding a file is read in and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    /// The encoding.
    pub encoding: Encoding,
    /// How it was chosen, for reports and reject reasons ("forced with
    /// --encoding", "UTF-8 byte-order mark", "byte 0xd5 at offset 120 is not
    /// UTF-8", …).
    pub how: String,
    /// Whether the caller forced it.
    pub forced: bool,
}

impl Detected {
    /// The hint a reject reason ends with: which encoding the file is read
    /// in, why, and how to choose another.
    #[must_use]
    pub fn hint(&self) -> String {
        let other = match self.encoding {
            Encoding::Utf8 => "if the file is GBK or GB18030, run again with --encoding gbk",
            Encoding::Gb18030 => "if the file is UTF-8, run again with --encoding utf8",
        };
        format!(
            "the file is read as {} ({}); {other}",
            self.encoding, self.how
        )
    }
}

/// Chooses the encoding of the file `file` (read from its start; left at
/// offset 0): `forced` when given, else by byte-order mark, else by
/// whether the bytes from the first non-ASCII byte on are valid UTF-8. A
/// UTF-16 byte-order mark is an error (the message says to save the file as
/// UTF-8 or GBK), and so is GB18030 forced on a file that starts with a
/// UTF-8 byte-order mark.
pub fn detect(
    file: &mut File,
    path: &Path,
    forced: Option<Encoding>,
) -> Result<Detected, ReadError> {
    let io = |source: std::io::Error| ReadError::Bad {
        path: path.to_owned(),
        location: Location::Row(0),
        reason: format!("cannot read: {source}"),
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut head = [0u8; 4];
    let n = read_full(file, &mut head).map_err(io)?;
    let head = &head[..n];
    if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        return Err(ReadError::Unusable {
            path: path.to_owned(),
            reason: "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8 or GBK CSV".to_owned(),
        });
    }
    if forced == Some(Encoding::Gb18030) && head.starts_with(&[0xef, 0xbb, 0xbf]) {
        return Err(ReadError::Unusable {
            path: path.to_owned(),
            reason: "the file starts with a UTF-8 byte-order mark, but GBK/GB18030 was forced with --encoding; drop --encoding (or use utf8)".to_owned(),
        });
    }
    let detected = if let Some(encoding) = forced {
        Detected {
            encoding,
            how: "forced with --encoding".to_owned(),
            forced: true,
        }
    } else if head.starts_with(&[0xef, 0xbb, 0xbf]) {
        Detected {
            encoding: Encoding::Utf8,
            how: "it starts with a UTF-8 byte-order mark".to_owned(),
            forced: false,
        }
    } else if head.starts_with(&[0x84, 0x31, 0x95, 0x33]) {
        Detected {
            encoding: Encoding::Gb18030,
            how: "it starts with a GB18030 byte-order mark".to_owned(),
            forced: false,
        }
    } else {
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        sniff(file).map_err(io)?
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(detected)
}

/// Reads into `buf` until it is full or the input ends; the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Detection without a byte-order mark (see the module documentation).
fn sniff(r: &mut impl Read) -> std::io::Result<Detected> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    // Skip the ASCII prefix block by block.
    let (start, mut window) = loop {
        let n = read_full(r, &mut buf)?;
        if let Some(i) = buf[..n].iter().position(|b| !b.is_ascii()) {
            break (offset + i as u64, buf[i..n].to_vec());
        }
        offset += n as u64;
        if n < buf.len() || offset >= SNIFF_LIMIT {
            let how = if n < buf.len() {
                "it is all ASCII".to_owned()
            } else {
                format!("its first {} MiB are ASCII", offset >> 20)
            };
            return Ok(Detected {
                encoding: Encoding::Utf8,
                how,
                forced: false,
            });
        }
    };
    // Then look at up to SNIFF_BYTES from the first non-ASCII byte.
    let mut eof = false;
    while window.len() < SNIFF_BYTES {
        let want = (SNIFF_BYTES - window.len()).min(buf.len());
        let n = read_full(r, &mut buf[..want])?;
        window.extend_from_slice(&buf[..n]);
        if n < want {
            eof = true;
            break;
        }
    }
    Ok(match std::str::from_utf8(&window) {
        Ok(_) => Detected {
            encoding: Encoding::Utf8,
            how: utf8_how(start, window.len(), eof),
            forced: false,
        },
        // A character cut by the end of the window is no evidence.
        Err(e) if e.error_len().is_none() && !eof => Detected {
            encoding: Encoding::Utf8,
            how: utf8_how(start, window.len(), eof),
            forced: false,
        },
        Err(e) => {
            let at = e.valid_up_to();
            Detected {
                encoding: Encoding::Gb18030,
                how: format!(
                    "byte {:#04x} at offset {} is not UTF-8",
                    window[at],
                    start + at as u64
                ),
                forced: false,
            }
        }
    })
}

fn utf8_how(start: u64, len: usize, eof: bool) -> String {
    if eof {
        "it is valid UTF-8".to_owned()
    } else {
        format!(
            "the {} MiB from offset {start} on are valid UTF-8",
            len >> 20
        )
    }
}

/// A field of a record that is not valid in the chosen encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The encoding.
    pub encoding: Encoding,
    /// 0-based index of the field.
    pub field: usize,
    /// Offset of the first bad byte in the field.
    pub offset: usize,
    /// The bad bytes (at most 4).
    pub bytes: Vec<u8>,
}

impl DecodeError {
    /// The reason, naming the column (`columns` are the header's names; the
    /// column's number alone when there are none).
    #[must_use]
    pub fn reason(&self, columns: &[String]) -> String {
        let column = columns.get(self.field).map_or_else(
            || format!("column {}", self.field + 1),
            |c| format!("{c} (column {})", self.field + 1),
        );
        let bytes: Vec<String> = self.bytes.iter().map(|b| format!("{b:#04x}")).collect();
        format!(
            "{column} is not valid {}: byte(s) {} at byte {} of the field",
            match self.encoding {
                Encoding::Utf8 => "UTF-8",
                Encoding::Gb18030 => "GB18030/GBK",
            },
            bytes.join(" "),
            self.offset
        )
    }
}

/// Reusable buffers for [`decode_record`].
#[derive(Debug, Default)]
pub struct Decoder {
    record: csv::ByteRecord,
    buf: Vec<u8>,
}

/// Decodes `record` in place to UTF-8. UTF-8 records are only checked
/// (nothing is copied); GB18030 records are transcoded field by field. On
/// the first bad field the record is replaced by its lossy decoding (the bad
/// bytes become U+FFFD) and the error is returned.
pub fn decode_record(
    encoding: Encoding,
    record: &mut csv::ByteRecord,
    scratch: &mut Decoder,
) -> Result<(), DecodeError> {
    match encoding {
        Encoding::Utf8 => check_utf8(record),
        Encoding::Gb18030 => transcode_gb18030(record, scratch),
    }
}

/// Checks that every field of a record is UTF-8; lossy on failure.
fn check_utf8(record: &mut csv::ByteRecord) -> Result<(), DecodeError> {
    let all = record.as_slice();
    if all.is_ascii() {
        return Ok(());
    }
    // Fields are valid when their concatenation is and every field boundary
    // is a character boundary (not a continuation byte). simdutf8 checks
    // the common, valid case at SIMD speed (about 3× std on CJK text).
    let first_bad = match simdutf8::basic::from_utf8(all) {
        Ok(_) => {
            let mut end = 0;
            let mut bad = None;
            for (i, f) in record.iter().enumerate() {
                end += f.len();
                if all.get(end).is_some_and(|b| b & 0xc0 == 0x80) {
                    bad = Some(i);
                    break;
                }
            }
            match bad {
                None => return Ok(()),
                Some(i) => i,
            }
        }
        Err(_) => record
            .iter()
            .position(|f| std::str::from_utf8(f).is_err())
            .unwrap_or(0),
    };
    let field = &record[first_bad];
    let e = std::str::from_utf8(field).err().map_or((0, 1), |e| {
        (
            e.valid_up_to(),
            e.error_len().unwrap_or(field.len() - e.valid_up_to()),
        )
    });
    let err = DecodeError {
        encoding: Encoding::Utf8,
        field: first_bad,
        offset: e.0,
        bytes: field[e.0..(e.0 + e.1).min(field.len())]
            .iter()
            .copied()
            .take(4)
            .collect(),
    };
    let lossy: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    *record = csv::ByteRecord::from(lossy);
    Err(err)
}

/// Transcodes a GB18030 record to UTF-8; lossy on failure.
fn transcode_gb18030(
    record: &mut csv::ByteRecord,
    scratch: &mut Decoder,
) -> Result<(), DecodeError> {
    if record.as_slice().is_ascii() {
        return Ok(());
    }
    let out = &mut scratch.record;
    out.clear();
    let mut error = None;
    for (i, field) in record.iter().enumerate() {
        if field.is_ascii() {
            out.push_field(field);
            continue;
        }
        match decode_gb18030(field, &mut scratch.buf) {
            Ok(()) => out.push_field(&scratch.buf),
            Err((offset, len)) => {
                if error.is_none() {
                    error = Some(DecodeError {
                        encoding: Encoding::Gb18030,
                        field: i,
                        offset,
                        bytes: field[offset..(offset + len).min(field.len())]
                            .iter()
                            .copied()
                            .take(4)
                            .collect(),
                    });
                }
                let (text, _) = encoding_rs::GB18030.decode_without_bom_handling(field);
                out.push_field(text.as_bytes());
            }
        }
    }
    std::mem::swap(record, out);
    error.map_or(Ok(()), Err)
}

/// Decodes one GB18030 field into `buf` (UTF-8), or the offset and length
/// of its first malformed sequence.
fn decode_gb18030(field: &[u8], buf: &mut Vec<u8>) -> Result<(), (usize, usize)> {
    let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let cap = decoder
        .max_utf8_buffer_length_without_replacement(field.len())
        .unwrap_or(field.len() * 3 + 16);
    buf.clear();
    buf.resize(cap, 0);
    let (result, read, written) = decoder.decode_to_utf8_without_replacement(field, buf, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => {
            buf.truncate(written);
            Ok(())
        }
        encoding_rs::DecoderResult::Malformed(len, extra) => {
            let len = usize::from(len);
            let start = read - usize::from(extra) - len;
            Err((start, len.max(1)))
        }
        // The buffer holds the worst case.
        encoding_rs::DecoderResult::OutputFull => Err((read, 1)),
    }
}

/// Decodes a header record: the column names (trimmed, a byte-order mark on
/// the first removed), or the reason it is not valid in the encoding.
pub fn decode_header(
    encoding: Encoding,
    header: &csv::ByteRecord,
) -> Result<Vec<String>, DecodeError> {
    let mut record = header.clone();
    decode_record(encoding, &mut record, &mut Decoder::default())?;
    Ok(record
        .iter()
        .enumerate()
        .map(|(i, h)| {
            // Valid UTF-8 after decoding.
            let h = std::str::from_utf8(h).unwrap_or_default();
            if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            }
            .trim()
            .to_owned()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_bytes(bytes: &[u8], forced: Option<Encoding>) -> Result<Detected, ReadError> {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        detect(&mut f, Path::new("t.csv"), forced)
    }

    /// "王芳" in GBK (Python: "王芳".encode("gbk")).
    const WANG_FANG_GBK: &[u8] = &[0xcd, 0xf5, 0xb7, 0xbc];

    #[test]
    fn detection() {
        let d = detect_bytes(b"id,lon,lat\n1,2,3\n", None).unwrap();
        assert_eq!(
            (d.encoding, d.how.as_str()),
            (Encoding::Utf8, "it is all ASCII")
        );
        let d = detect_bytes("\u{feff}名,lon\n".as_bytes(), None).unwrap();
        assert_eq!(d.encoding, Encoding::Utf8);
        assert!(d.how.contains("byte-order mark"));
        let d = detect_bytes("name,lon\n王芳,1\n".as_bytes(), None).unwrap();
        assert_eq!(
            (d.encoding, d.how.as_str()),
            (Encoding::Utf8, "it is valid UTF-8")
        );
        let mut gbk = b"name,lon\n".to_vec();
        gbk.extend(WANG_FANG_GBK);
        let d = detect_bytes(&gbk, None).unwrap();
        assert_eq!(d.encoding, Encoding::Gb18030);
        assert_eq!(d.how, "byte 0xcd at offset 9 is not UTF-8");
        let d = detect_bytes(&gbk, Some(Encoding::Utf8)).unwrap();
        assert!(d.forced && d.encoding == Encoding::Utf8);
        let e = detect_bytes("\u{feff}id".as_bytes(), Some(Encoding::Gb18030)).unwrap_err();
        assert!(e.to_string().contains("byte-order mark"), "{e}");
        let e = detect_bytes(&[0xff, 0xfe, b'a', 0], None).unwrap_err();
        assert!(e.to_string().contains("UTF-16"), "{e}");
    }

    #[test]
    fn a_late_non_ascii_byte_decides() {
        // 2 MiB of ASCII, then GBK: detection reads past the first block.
        let mut bytes = b"id,lon\n".to_vec();
        while bytes.len() < 2 << 20 {
            bytes.extend(b"1,116.4\n");
        }
        bytes.extend(WANG_FANG_GBK);
        let d = detect_bytes(&bytes, None).unwrap();
        assert_eq!(d.encoding, Encoding::Gb18030);
    }

    #[test]
    fn utf8_cut_at_the_window_end_is_still_utf8() {
        let mut bytes = "名".as_bytes().to_vec();
        while bytes.len() < SNIFF_BYTES - 1 {
            bytes.extend("名".as_bytes());
        }
        bytes.truncate(SNIFF_BYTES - 1);
        bytes.extend("名名".as_bytes());
        let d = detect_bytes(&bytes, None).unwrap();
        assert_eq!(d.encoding, Encoding::Utf8, "{}", d.how);
    }

    #[test]
    fn records_decode_or_say_which_bytes_are_bad() {
        let mut d = Decoder::default();
        let mut r = csv::ByteRecord::from(vec![&b"1"[..], WANG_FANG_GBK]);
        decode_record(Encoding::Gb18030, &mut r, &mut d).unwrap();
        assert_eq!(&r[1], "王芳".as_bytes());
        // A lead byte with no trail byte.
        let mut r = csv::ByteRecord::from(vec![&b"1"[..], &[b'a', 0xcd][..]]);
        let e = decode_record(Encoding::Gb18030, &mut r, &mut d).unwrap_err();
        assert_eq!((e.field, e.offset, e.bytes.as_slice()), (1, 1, &[0xcd][..]));
        assert_eq!(&r[1], "a\u{fffd}".as_bytes());
        let cols = vec!["id".to_owned(), "name".to_owned()];
        assert_eq!(
            e.reason(&cols),
            "name (column 2) is not valid GB18030/GBK: byte(s) 0xcd at byte 1 of the field"
        );
        // UTF-8: valid passes untouched, GBK bytes are an error.
        let mut r = csv::ByteRecord::from(vec!["1", "王芳"]);
        decode_record(Encoding::Utf8, &mut r, &mut d).unwrap();
        assert_eq!(&r[1], "王芳".as_bytes());
        let mut r = csv::ByteRecord::from(vec![&b"1"[..], WANG_FANG_GBK]);
        let e = decode_record(Encoding::Utf8, &mut r, &mut d).unwrap_err();
        assert_eq!((e.field, e.offset), (1, 0));
        assert_eq!(std::str::from_utf8(&r[1]).unwrap(), "\u{fffd}".repeat(4));
        // A character split across two fields is invalid in both.
        let mut r = csv::ByteRecord::from(vec![&[0xe5][..], &[0x90, 0x8d][..]]);
        let e = decode_record(Encoding::Utf8, &mut r, &mut d).unwrap_err();
        assert_eq!(e.field, 0);
        // A four-byte GB18030 character (U+20000, outside GBK).
        let mut r = csv::ByteRecord::from(vec![&[0x95, 0x32, 0x82, 0x36][..]]);
        decode_record(Encoding::Gb18030, &mut r, &mut d).unwrap();
        assert_eq!(&r[0], "\u{20000}".as_bytes());
    }
}

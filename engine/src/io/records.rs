//! CSV records as raw bytes, split where the `csv` crate splits them, for
//! readers that copy rows through unchanged (`assign` writes every input
//! line as read, with the code columns filled in or appended).
//!
//! [`Records`] cuts a byte stream into blocks of whole records. Each record
//! is the bytes between its terminators, quotes and all: the same records,
//! in the same places, as [`csv::Reader`] with its defaults (`,` delimiter,
//! `"` quote with doubled quotes inside, `\n`, `\r` or `\r\n` terminators,
//! empty lines skipped, a quote only opening a quoted field at the field's
//! first byte). The scan keeps its state across reads, so a record that
//! never ends (an unterminated quote) costs linear time, not quadratic.
//! [`split_fields`] and [`unquote`] take one record apart the same way.
//!
//! The splitting only looks at the ASCII bytes `,`, `"`, `\r` and `\n`,
//! which never occur inside a multi-byte character of UTF-8 or GB18030, so
//! it works on the file's bytes before they are decoded.

use std::borrow::Cow;
use std::io::{self, Read};
use std::ops::Range;

/// Where the scanner stands between two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between records (terminators are skipped: empty lines are no
    /// records).
    Between,
    /// Inside a record, not inside quotes.
    Field,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: either a doubled quote or
    /// the closing one, decided by the next byte.
    QuoteInQuoted,
}

/// A block of whole records and the bytes they are cut from.
#[derive(Debug, Default)]
pub struct Block {
    /// The bytes (the records and what lies between them).
    pub data: Vec<u8>,
    /// Each record's range in `data`, terminators excluded.
    pub records: Vec<Range<usize>>,
    /// Bytes of the stream consumed up to the end of the last record.
    pub end_offset: u64,
}

impl Block {
    /// The `i`-th record's bytes.
    #[must_use]
    pub fn record(&self, i: usize) -> &[u8] {
        &self.data[self.records[i].clone()]
    }
}

/// Cuts a CSV byte stream into [`Block`]s of whole records.
#[derive(Debug)]
pub struct Records<R> {
    inner: R,
    /// Bytes read, not yet handed out; `scan` bytes of it already scanned.
    carry: Vec<u8>,
    scan: usize,
    state: State,
    /// Where the record being scanned starts in `carry`.
    start: usize,
    eof: bool,
    /// Stream offset of `carry[0]`.
    offset: u64,
    read_size: usize,
}

impl<R: Read> Records<R> {
    /// A scanner over `inner`, reading `read_size` bytes at a time (at
    /// least 4 KiB).
    pub fn new(inner: R, read_size: usize) -> Records<R> {
        Records {
            inner,
            carry: Vec::new(),
            scan: 0,
            state: State::Between,
            start: 0,
            eof: false,
            offset: 0,
            read_size: read_size.max(4096),
        }
    }

    /// Fills `block` (cleared first; its buffers are reused) with the next
    /// records, at most `max_records` of them and about `read_size` bytes.
    /// Returns `false` once the stream is exhausted and no record is left.
    ///
    /// # Errors
    /// A read error of the stream.
    pub fn next_block(&mut self, block: &mut Block, max_records: usize) -> io::Result<bool> {
        let max_records = max_records.max(1);
        block.records.clear();
        block.data.clear();
        std::mem::swap(&mut block.data, &mut self.carry);
        let data = &mut block.data;
        loop {
            self.scan_into(data, &mut block.records, max_records);
            let full = block.records.len() >= max_records;
            let enough = !block.records.is_empty() && data.len() >= self.read_size;
            if full || enough || self.eof {
                break;
            }
            // Read more behind what is there.
            let old = data.len();
            data.resize(old + self.read_size, 0);
            let n = loop {
                match self.inner.read(&mut data[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        data.truncate(old);
                        return Err(e);
                    }
                }
            };
            data.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
        if self.eof && block.records.len() < max_records && self.state != State::Between {
            // The last record has no terminator.
            block.records.push(self.start..data.len());
            self.state = State::Between;
            self.scan = data.len();
            self.start = data.len();
        }
        // What follows the last record goes to the next block.
        let keep = if self.state == State::Between {
            self.scan
        } else {
            self.start
        };
        self.carry.clear();
        self.carry.extend_from_slice(&data[keep..]);
        self.scan -= keep;
        self.start -= keep.min(self.start);
        self.offset += keep as u64;
        block.end_offset = self.offset;
        Ok(!block.records.is_empty())
    }

    /// Scans `data` from `self.scan` on, pushing complete records, until
    /// `max` records are in `records` or the data ends.
    fn scan_into(&mut self, data: &[u8], records: &mut Vec<Range<usize>>, max: usize) {
        let mut i = self.scan;
        let n = data.len();
        while i < n && records.len() < max {
            match self.state {
                State::Between => {
                    if matches!(data[i], b'\r' | b'\n') {
                        i += 1;
                    } else {
                        self.start = i;
                        self.state = State::Field;
                    }
                }
                State::Field => match memchr::memchr3(b'"', b'\r', b'\n', &data[i..]) {
                    None => i = n,
                    Some(k) => {
                        let j = i + k;
                        if data[j] == b'"' {
                            // A quote opens a field only as its first byte.
                            if j == self.start || data[j - 1] == b',' {
                                self.state = State::Quoted;
                            }
                            i = j + 1;
                        } else {
                            records.push(self.start..j);
                            self.state = State::Between;
                            i = j + 1;
                        }
                    }
                },
                State::Quoted => match memchr::memchr(b'"', &data[i..]) {
                    None => i = n,
                    Some(k) => {
                        self.state = State::QuoteInQuoted;
                        i += k + 1;
                    }
                },
                State::QuoteInQuoted => {
                    if data[i] == b'"' {
                        // A doubled quote: still inside.
                        self.state = State::Quoted;
                        i += 1;
                    } else {
                        // Closed; this byte is read as outside quotes.
                        self.state = State::Field;
                    }
                }
            }
        }
        self.scan = i;
    }
}

/// The raw ranges of a record's fields (quotes kept), cut at the commas
/// outside quotes, into `out` (cleared first). A record always has at least
/// one field. Returns `false` when the record ends inside an open quote
/// (only the last record of a file can): its bytes copied as they are
/// would swallow whatever follows them.
pub fn split_fields(record: &[u8], out: &mut Vec<Range<usize>>) -> bool {
    out.clear();
    if memchr::memchr(b'"', record).is_none() {
        let mut start = 0;
        for j in memchr::memchr_iter(b',', record) {
            out.push(start..j);
            start = j + 1;
        }
        out.push(start..record.len());
        return true;
    }
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < record.len() {
        let b = record[i];
        if quoted {
            if b == b'"' {
                if record.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else if b == b',' {
            out.push(start..i);
            start = i + 1;
        } else if b == b'"' && i == start {
            quoted = true;
        }
        i += 1;
    }
    out.push(start..record.len());
    !quoted
}

/// A raw field's value, as the `csv` crate reads it: a field that starts
/// with a quote loses its quotes (doubled quotes inside become one, bytes
/// after the closing quote are kept); any other field is its bytes.
#[must_use]
pub fn unquote(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.first() != Some(&b'"') {
        return Cow::Borrowed(raw);
    }
    let body = &raw[1..];
    // The common case: one closing quote at the end, none inside.
    if let Some(k) = memchr::memchr(b'"', body)
        && k + 1 == body.len()
    {
        return Cow::Borrowed(&body[..k]);
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'"' {
            if body.get(i + 1) == Some(&b'"') {
                out.push(b'"');
                i += 2;
                continue;
            }
            out.extend_from_slice(&body[i + 1..]);
            break;
        }
        out.push(body[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// Appends one field to a CSV line, quoted when it holds a comma, a quote,
/// `\r` or `\n` (quotes doubled), as the `csv` crate's writer does.
pub fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    if field
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'))
    {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record and field as the csv crate reads them.
    fn csv_crate(data: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        r.byte_records()
            .map(|rec| rec.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    /// Every record and field as [`Records`] and [`split_fields`] read
    /// them, `read_size` bytes at a time (below the floor too, to test
    /// refills), at most `max` records a block.
    fn ours(data: &[u8], read_size: usize, max: usize) -> Vec<Vec<Vec<u8>>> {
        let mut recs = Records::new(data, read_size);
        recs.read_size = read_size;
        let mut block = Block::default();
        let mut got = Vec::new();
        let mut ranges = Vec::new();
        let mut consumed = 0;
        while recs.next_block(&mut block, max).unwrap() {
            for i in 0..block.records.len() {
                let r = block.record(i);
                split_fields(r, &mut ranges);
                got.push(
                    ranges
                        .iter()
                        .map(|f| unquote(&r[f.clone()]).into_owned())
                        .collect(),
                );
            }
            assert!(block.end_offset >= consumed);
            consumed = block.end_offset;
        }
        got
    }

    #[test]
    fn the_same_records_and_fields_as_the_csv_crate() {
        let cases: &[&[u8]] = &[
            b"a,b\n1,2\n",
            b"a,b\r\n1,2\r\n\r\n\n3,4",
            b"a,b\r1,2\r3,4\r",
            b"\"x,y\",\"he said \"\"hi\"\"\"\n\"multi\nline\",z\n",
            b"ab\"c,d\ne,\"f\"g\"h\",i\n",
            b" \"q\",r\n,,\n\"\"\n\"unterminated,\nrest",
            b"\n\n\n",
            b"",
            b"only",
            b"\"a\"\"\",b\n\"\"\"\"\n",
            "经度,纬度\n116.3,39.9\n".as_bytes(),
        ];
        for case in cases {
            let want = csv_crate(case);
            for (read_size, max) in [(4096, 1 << 20), (4096, 2), (1, 1), (1, 3), (7, 2)] {
                assert_eq!(
                    ours(case, read_size, max),
                    want,
                    "{:?} read {read_size} at a time, {max} per block",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    #[test]
    fn an_unterminated_quote_is_one_record_read_in_linear_time() {
        // 8 MiB inside one open quote, read 4 KiB at a time: each byte is
        // scanned once (a rescan per read would be 2,000× slower).
        let mut data = b"a,\"".to_vec();
        data.resize(8 << 20, b'x');
        let got = ours(&data, 4096, 1 << 16);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0][1].len(), (8 << 20) - 3);
    }

    #[test]
    fn end_offsets_point_past_each_blocks_last_record() {
        let data = b"h\n1\n22\n333\n";
        let mut recs = Records::new(&data[..], 4096);
        let mut block = Block::default();
        assert!(recs.next_block(&mut block, 2).unwrap());
        assert_eq!(block.end_offset, 4, "past `h\\n1\\n`");
        assert!(recs.next_block(&mut block, 2).unwrap());
        assert_eq!(block.record(1), b"333");
        assert!(!recs.next_block(&mut block, 2).unwrap());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_split_as_the_csv_crate_splits(
            data in proptest::collection::vec(
                proptest::sample::select(b"ab,\"\r\n \xe4".to_vec()), 0..200),
            read_size in 1usize..50,
            max in 1usize..5,
        ) {
            let want = csv_crate(&data);
            let got = ours(&data, read_size, max);
            proptest::prop_assert_eq!(got, want);
        }
    }
}

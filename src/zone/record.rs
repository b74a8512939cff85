//! The byte format of one record in the log.
//!
//! ```text
//! 0   u32 len        whole record in bytes, header and padding included (multiple of 8)
//! 4   i32 pid        the posting worker's pid
//! 8   u64 seq        position in the zone's global order
//! 16  u16 source_len
//! 18  u16 event_len
//! 20  u16 unique_len
//! 22  u16 flags      bit 0: a unique event (its key may be empty);
//!                    bit 1: `wid` is set; bit 2: an API's own event;
//!                    bit 3: a cluster event: the data starts with its u64
//!                    cluster ordinal (`data_len` counts it);
//!                    bit 4: held: a cluster `unique` event waiting for its
//!                    cluster claim (only the bridge reads it); the claim's
//!                    lifetime (u64 ms) follows the ordinal;
//!                    bit 5: remote: received from another node (pid, wid
//!                    are the bridge's, not the poster's); others 0
//! 24  u32 data_len   encoded payload (see `crate::wire::payload`)
//! 28  i32 wid        the poster's `ngx.worker.id()` (-1: not a worker), when bit 1
//! 32  u64 posted_us  when it was posted (CLOCK_MONOTONIC µs; 0: unknown)
//! 40  source | event | unique | data | zero padding to 8
//! ```
//! Little-endian (native on every platform nginx builds this module for).

/// Size of the fixed record header.
pub const HEADER_LEN: usize = 40;

/// Who posted a record, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The poster's pid (what resty.worker.events handlers get).
    pub pid: i32,
    /// The poster's `ngx.worker.id()`, -1 outside workers (what resty.events
    /// handlers get); `None` for records written before the field existed.
    pub wid: Option<i32>,
    /// An API's own event (resty.worker.events' `started`/`stopping`): the
    /// other APIs on the bus do not hand it to their handlers.
    pub own: bool,
    /// When it was posted (monotonic µs; 0: unknown).
    pub posted_us: u64,
    /// Received from another node by the cluster bridge.
    pub remote: bool,
}

impl From<i32> for Origin {
    /// A plain event from `pid`, worker id unknown.
    fn from(pid: i32) -> Origin {
        Origin {
            pid,
            wid: None,
            own: false,
            posted_us: 0,
            remote: false,
        }
    }
}

/// Decoded fixed header of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub pid: i32,
    pub wid: Option<i32>,
    pub own: bool,
    pub posted_us: u64,
    pub seq: u64,
    pub source_len: u16,
    pub event_len: u16,
    pub unique_len: u16,
    /// A unique event (the key is `unique_len` bytes, maybe none).
    pub unique: bool,
    pub data_len: u32,
    /// A cluster event: `data` starts with its 8-byte ordinal.
    pub cluster: bool,
    /// A cluster `unique` event waiting for its cluster claim.
    pub hold: bool,
    /// Received from another node.
    pub remote: bool,
}

/// Bytes of the cluster ordinal in front of a cluster record's data.
pub const ORDINAL_LEN: usize = 8;

/// `flags` bit: the record is a unique event.
const FLAG_UNIQUE: u16 = 1;
/// `flags` bit: `wid` holds the poster's worker id.
const FLAG_WID: u16 = 2;
/// `flags` bit: an API's own event.
const FLAG_OWN: u16 = 4;
/// `flags` bit: a cluster event (ordinal in front of the data).
const FLAG_CLUSTER: u16 = 8;
/// `flags` bit: held for the cluster claim.
const FLAG_HOLD: u16 = 16;
/// `flags` bit: received from another node.
const FLAG_REMOTE: u16 = 32;

/// Why a record cannot be built.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A name (source, event, unique) is longer than 65535 bytes.
    NameTooLong(&'static str, usize),
    /// The payload does not fit a u32.
    DataTooLong(usize),
    /// An empty source or event (a reader would take the record for garbage).
    Empty(&'static str),
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::NameTooLong(what, n) => {
                write!(f, "{what} is too long: {n} bytes, at most 65535")
            }
            RecordError::DataTooLong(n) => write!(f, "payload too large: {n} bytes encoded"),
            RecordError::Empty(what) => write!(f, "{what} is required"),
        }
    }
}

/// Total record length for the given parts (padded to 8).
pub fn record_len(source: usize, event: usize, unique: usize, data: usize) -> u64 {
    let raw = HEADER_LEN as u64 + source as u64 + event as u64 + unique as u64 + data as u64;
    (raw + 7) & !7
}

impl RecordHeader {
    /// Builds the header for a record of these parts.
    pub fn new(
        origin: impl Into<Origin>,
        seq: u64,
        source: &[u8],
        event: &[u8],
        unique: Option<&[u8]>,
        data: &[u8],
    ) -> Result<RecordHeader, RecordError> {
        let origin = origin.into();
        let is_unique = unique.is_some();
        let unique = unique.unwrap_or_default();
        if source.is_empty() {
            return Err(RecordError::Empty("source"));
        }
        if event.is_empty() {
            return Err(RecordError::Empty("event"));
        }
        let name = |what, n: usize| u16::try_from(n).map_err(|_| RecordError::NameTooLong(what, n));
        let source_len = name("source", source.len())?;
        let event_len = name("event", event.len())?;
        let unique_len = name("unique", unique.len())?;
        let data_len =
            u32::try_from(data.len()).map_err(|_| RecordError::DataTooLong(data.len()))?;
        let len = record_len(source.len(), event.len(), unique.len(), data.len());
        let len = u32::try_from(len).map_err(|_| RecordError::DataTooLong(data.len()))?;
        Ok(RecordHeader {
            len,
            pid: origin.pid,
            wid: origin.wid,
            own: origin.own,
            posted_us: origin.posted_us,
            seq,
            source_len,
            event_len,
            unique_len,
            unique: is_unique,
            data_len,
            cluster: false,
            hold: false,
            remote: origin.remote,
        })
    }

    /// Serialises the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.pid.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..18].copy_from_slice(&self.source_len.to_le_bytes());
        b[18..20].copy_from_slice(&self.event_len.to_le_bytes());
        b[20..22].copy_from_slice(&self.unique_len.to_le_bytes());
        let mut flags = 0;
        if self.unique {
            flags |= FLAG_UNIQUE;
        }
        if self.wid.is_some() {
            flags |= FLAG_WID;
        }
        if self.own {
            flags |= FLAG_OWN;
        }
        if self.cluster {
            flags |= FLAG_CLUSTER;
        }
        if self.hold {
            flags |= FLAG_HOLD;
        }
        if self.remote {
            flags |= FLAG_REMOTE;
        }
        b[22..24].copy_from_slice(&flags.to_le_bytes());
        b[24..28].copy_from_slice(&self.data_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.wid.unwrap_or(0).to_le_bytes());
        b[32..40].copy_from_slice(&self.posted_us.to_le_bytes());
        b
    }

    /// Parses a header; `None` if it is inconsistent with itself.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Option<RecordHeader> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let flags = u16_at(22);
        let h = RecordHeader {
            len: u32_at(0),
            pid: u32_at(4) as i32,
            wid: (flags & FLAG_WID != 0).then_some(u32_at(28) as i32),
            own: flags & FLAG_OWN != 0,
            posted_us: u64::from_le_bytes(b[32..40].try_into().ok()?),
            seq: u64::from_le_bytes(b[8..16].try_into().ok()?),
            source_len: u16_at(16),
            event_len: u16_at(18),
            unique_len: u16_at(20),
            unique: flags & FLAG_UNIQUE != 0 || u16_at(20) != 0,
            data_len: u32_at(24),
            cluster: flags & FLAG_CLUSTER != 0,
            hold: flags & FLAG_HOLD != 0,
            remote: flags & FLAG_REMOTE != 0,
        };
        let want = record_len(
            h.source_len as usize,
            h.event_len as usize,
            h.unique_len as usize,
            h.data_len as usize,
        );
        let prefix = match (h.cluster, h.hold) {
            (false, _) => 0,
            (true, false) => ORDINAL_LEN,
            (true, true) => 2 * ORDINAL_LEN,
        };
        let ordinal_fits = h.data_len as usize >= prefix && (h.cluster || !h.hold);
        (want == h.len as u64 && h.source_len > 0 && h.event_len > 0 && ordinal_fits).then_some(h)
    }
}

/// A record copied out of the log: borrowed parts of the reader's buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub pid: i32,
    pub wid: Option<i32>,
    pub own: bool,
    pub posted_us: u64,
    pub seq: u64,
    pub source: &'a [u8],
    pub event: &'a [u8],
    /// `None` for an ordinary (broadcast to all) event.
    pub unique: Option<&'a [u8]>,
    /// The encoded payload (without a cluster record's ordinal).
    pub data: &'a [u8],
    /// A cluster event's ordinal on its node.
    pub ordinal: Option<u64>,
    /// Held for the cluster claim: the claim's lifetime (ms).
    pub hold: Option<u64>,
    /// Received from another node.
    pub remote: bool,
}

impl<'a> RecordView<'a> {
    /// Splits a whole record (`buf.len() >= h.len`) into its parts.
    pub fn parse(h: &RecordHeader, buf: &'a [u8]) -> Option<RecordView<'a>> {
        let mut at = HEADER_LEN;
        let mut take = |n: usize| {
            let s = buf.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let source = take(h.source_len as usize)?;
        let event = take(h.event_len as usize)?;
        let unique = take(h.unique_len as usize)?;
        let mut data = take(h.data_len as usize)?;
        let (mut ordinal, mut hold) = (None, None);
        if h.cluster {
            let (o, rest) = data.split_first_chunk::<ORDINAL_LEN>()?;
            ordinal = Some(u64::from_le_bytes(*o));
            data = rest;
            if h.hold {
                let (t, rest) = data.split_first_chunk::<ORDINAL_LEN>()?;
                hold = Some(u64::from_le_bytes(*t));
                data = rest;
            }
        }
        Some(RecordView {
            pid: h.pid,
            wid: h.wid,
            own: h.own,
            posted_us: h.posted_us,
            seq: h.seq,
            source,
            event,
            unique: h.unique.then_some(unique),
            data,
            ordinal,
            hold,
            remote: h.remote,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = RecordHeader::new(1234, 99, b"src", b"ev", None, b"payload").unwrap();
        assert_eq!(h.len % 8, 0);
        assert_eq!(h.len as usize, (HEADER_LEN + 3 + 2 + 7 + 7) & !7);
        assert_eq!(RecordHeader::decode(&h.encode()), Some(h));
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(RecordHeader::decode(&[0u8; HEADER_LEN]), None);
        let mut b = RecordHeader::new(1, 1, b"s", b"e", Some(b"u"), b"d")
            .unwrap()
            .encode();
        b[0] ^= 8;
        assert_eq!(RecordHeader::decode(&b), None);
    }

    #[test]
    fn names_are_bounded() {
        let long = vec![b'x'; 70_000];
        let err = RecordHeader::new(1, 1, &long, b"e", None, b"").unwrap_err();
        assert_eq!(err, RecordError::NameTooLong("source", 70_000));
        assert_eq!(
            err.to_string(),
            "source is too long: 70000 bytes, at most 65535"
        );
    }

    #[test]
    fn empty_names_are_refused() {
        let e = RecordHeader::new(1, 1, b"", b"e", None, b"").unwrap_err();
        assert_eq!(e.to_string(), "source is required");
        let e = RecordHeader::new(1, 1, b"s", b"", None, b"").unwrap_err();
        assert_eq!(e.to_string(), "event is required");
    }

    #[test]
    fn an_empty_unique_key_is_still_unique() {
        let h = RecordHeader::new(7, 3, b"s", b"e", Some(b""), b"d").unwrap();
        let d = RecordHeader::decode(&h.encode()).unwrap();
        assert!(d.unique);
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(b"sed");
        buf.resize(h.len as usize, 0);
        assert_eq!(RecordView::parse(&d, &buf).unwrap().unique, Some(&b""[..]));
        let plain = RecordHeader::new(7, 3, b"s", b"e", None, b"d").unwrap();
        assert!(!RecordHeader::decode(&plain.encode()).unwrap().unique);
    }

    #[test]
    fn origin_roundtrips() {
        let o = Origin {
            pid: 77,
            wid: Some(-1),
            own: true,
            posted_us: 123,
            remote: true,
        };
        let h = RecordHeader::new(o, 3, b"s", b"e", None, b"d").unwrap();
        let d = RecordHeader::decode(&h.encode()).unwrap();
        assert_eq!(
            (d.pid, d.wid, d.own, d.posted_us, d.remote),
            (77, Some(-1), true, 123, true)
        );
        let o = Origin {
            pid: 78,
            wid: Some(3),
            own: false,
            posted_us: 0,
            remote: false,
        };
        let d = RecordHeader::decode(
            &RecordHeader::new(o, 3, b"s", b"e", None, b"d")
                .unwrap()
                .encode(),
        )
        .unwrap();
        assert_eq!((d.wid, d.own), (Some(3), false));
        // a record from before the field: no worker id
        let d = RecordHeader::decode(
            &RecordHeader::new(79, 3, b"s", b"e", None, b"d")
                .unwrap()
                .encode(),
        )
        .unwrap();
        assert_eq!((d.wid, d.own), (None, false));
    }

    #[test]
    fn parse_splits_parts() {
        let h = RecordHeader::new(7, 3, b"src", b"ev", Some(b"u1"), b"\x00\xff").unwrap();
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(b"srcevu1\x00\xff");
        buf.resize(h.len as usize, 0);
        let v = RecordView::parse(&h, &buf).unwrap();
        assert_eq!(v.source, b"src");
        assert_eq!(v.event, b"ev");
        assert_eq!(v.unique, Some(&b"u1"[..]));
        assert_eq!(v.data, b"\x00\xff");
        assert_eq!((v.pid, v.seq), (7, 3));
    }

    #[test]
    fn a_cluster_record_carries_its_ordinal_in_front_of_the_data() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend_from_slice(&2500u64.to_le_bytes());
        data.extend_from_slice(b"payload");
        let mut h = RecordHeader::new(7, 3, b"s", b"e", Some(b"k"), &data).unwrap();
        h.cluster = true;
        h.hold = true;
        let d = RecordHeader::decode(&h.encode()).unwrap();
        assert!(d.cluster && d.hold && !d.remote);
        let mut buf = h.encode().to_vec();
        buf.extend_from_slice(b"sek");
        buf.extend_from_slice(&data);
        buf.resize(h.len as usize, 0);
        let v = RecordView::parse(&d, &buf).unwrap();
        assert_eq!(
            (v.ordinal, v.data, v.hold),
            (Some(42), &b"payload"[..], Some(2500))
        );
        // a cluster flag without room for the ordinal is garbage
        let mut short = RecordHeader::new(7, 3, b"s", b"e", None, b"abc").unwrap();
        short.cluster = true;
        assert_eq!(RecordHeader::decode(&short.encode()), None);
    }
}

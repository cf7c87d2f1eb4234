//! Checks on binary parameter values before they reach the decoders of pgwire and
//! postgres-types, for what those decoders trust: an array header's element count.
//! Free of other dependencies, so that the `bind_params` fuzz target compiles it as is.

/// Whether a binary array value (ndim, flags, element oid, then length and lower bound
/// per dimension) has room for the elements its dimensions claim.
pub fn array_header_fits(value: &[u8]) -> bool {
    let int = |at: usize| {
        value
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(ndim) = int(0) else {
        return true; // too short to claim anything; the decoder reports it
    };
    if !(0..=6).contains(&ndim) {
        return false;
    }
    let header = 12 + 8 * ndim as usize;
    let mut elements: u64 = if ndim == 0 { 0 } else { 1 };
    for d in 0..ndim as usize {
        match int(12 + 8 * d) {
            Some(len) if len >= 0 => elements = elements.saturating_mul(len as u64),
            Some(_) => return false,
            None => return true,
        }
    }
    elements.saturating_mul(4) <= value.len().saturating_sub(header) as u64
}

#[cfg(test)]
mod tests {
    use super::array_header_fits;

    fn array(dims: &[i32], body: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [dims.len() as i32, 0, 25] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
            v.extend_from_slice(&1i32.to_be_bytes());
        }
        v.resize(v.len() + body, 0);
        v
    }

    #[test]
    fn element_counts_must_fit_the_value() {
        assert!(array_header_fits(&array(&[], 0)));
        assert!(array_header_fits(&array(&[2], 8)));
        assert!(array_header_fits(&array(&[2, 3], 24)));
        assert!(!array_header_fits(&array(&[2], 7)));
        assert!(!array_header_fits(&array(&[i32::MAX], 0)));
        assert!(!array_header_fits(&array(&[65536, 65536], 64)));
        assert!(!array_header_fits(&array(&[-1], 0)));
        assert!(!array_header_fits(&array(&[1; 7], 4)));
    }
}

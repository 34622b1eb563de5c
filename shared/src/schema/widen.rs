//! Type widening: which column type changes keep every value exactly (the changes Delta's own
//! `typeWidening` feature allows, less `date → timestamp_ntz`, which our UTC timestamps are not).

use deltalake::arrow::datatypes::DataType;

/// Whether a column of type `from` can become `to` with every value kept exactly: integers to wider
/// integers, `float → double`, integers to `double` (up to `int`: a `long` does not fit a double's
/// 53 bits) or to a decimal with room for their digits, and a decimal to one with at least as many
/// digits on both sides of the point. `false` when the types are equal.
pub fn widens(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let int_digits = |t: &DataType| match t {
        Int8 => Some(3),
        Int16 => Some(5),
        Int32 => Some(10),
        Int64 => Some(20),
        _ => None,
    };
    match (from, to) {
        (Int8 | Int16 | Int32, Int16 | Int32 | Int64) => rank(from) < rank(to),
        (Float32, Float64) | (Int8 | Int16 | Int32, Float64) => true,
        (Decimal128(p, s), Decimal128(p2, s2)) => {
            (p, s) != (p2, s2) && s2 >= s && (*p2 as i16 - *s2 as i16) >= (*p as i16 - *s as i16)
        }
        (_, Decimal128(p, s)) => int_digits(from).is_some_and(|d| *p as i16 - *s as i16 >= d),
        _ => false,
    }
}

fn rank(t: &DataType) -> u8 {
    match t {
        DataType::Int8 => 1,
        DataType::Int16 => 2,
        DataType::Int32 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn only_exact_changes_widen() {
        assert!(widens(&Int32, &Int64));
        assert!(widens(&Int16, &Int32));
        assert!(!widens(&Int64, &Int32));
        assert!(!widens(&Int32, &Int32));
        assert!(widens(&Float32, &Float64));
        assert!(widens(&Int32, &Float64));
        assert!(!widens(&Int64, &Float64));
        assert!(widens(&Decimal128(12, 2), &Decimal128(18, 2)));
        assert!(widens(&Decimal128(12, 2), &Decimal128(14, 4)));
        // Fewer integer digits: 99999999999.99 would not fit.
        assert!(!widens(&Decimal128(12, 2), &Decimal128(12, 4)));
        assert!(!widens(&Decimal128(12, 4), &Decimal128(12, 2)));
        assert!(widens(&Int32, &Decimal128(12, 2)));
        assert!(!widens(&Int64, &Decimal128(12, 2)));
        assert!(!widens(&Utf8, &Int64));
        assert!(!widens(&Int64, &Utf8));
    }
}

//! `bpf/abi/drop.h` and `drop_reasons.def`: why packets are dropped.

include!(concat!(env!("OUT_DIR"), "/drop_reasons.rs"));

abi_consts!(DROP_CONSTS in "drop.h" {
    /// Entries of the per-CPU `tw_drops` counter array (indexed by reason).
    TW_DROPS_MAX: u32 = 256,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_ciliums_numbers() {
        assert_eq!(DropReason::PolicyDenied.code(), 133);
        assert_eq!(DropReason::PolicyDeny.code(), 181);
        assert_eq!(DropReason::NoService.code(), 158);
        assert_eq!(DropReason::from_code(158), Some(DropReason::NoService));
        assert_eq!(DropReason::from_code(1), None);
        assert_eq!(DropReason::NoService.name(), "NO_SERVICE");
        assert_eq!(DropReason::PolicyDenied.description(), "Policy denied");
        assert_eq!(
            DropReason::NoService.hubble_name(),
            "SERVICE_BACKEND_NOT_FOUND"
        );
        assert_eq!(DropReason::PolicyDeny.hubble_name(), "POLICY_DENY");
        assert_eq!(DropReason::FragNotFound.code(), 175);
        assert_eq!(
            DropReason::FragNotFound.hubble_name(),
            "FIRST_LOGICAL_DATAGRAM_FRAGMENT_NOT_FOUND"
        );
        assert_eq!(
            DropReason::FragNotFound.description(),
            "First logical datagram fragment not found"
        );
        assert_eq!(DropReason::NotInSrcRange.code(), 177);
        assert_eq!(DropReason::NotInSrcRange.name(), "NOT_IN_SRC_RANGE");
        assert_eq!(
            DropReason::NotInSrcRange.hubble_name(),
            "DENIED_BY_LB_SRC_RANGE_CHECK"
        );
        assert_eq!(
            DropReason::NotInSrcRange.description(),
            "Denied by LB src range check"
        );
        let mut codes: Vec<u8> = DropReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DropReason::ALL.len(), "numbers are unique");
    }
}

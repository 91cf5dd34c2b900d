//! TCP data-path system calls std does not offer.

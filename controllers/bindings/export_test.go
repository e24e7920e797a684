package bindings

// MACOf exposes the MAC derivation to the envtest suite, which forces
// collisions through recorded MACs.
var MACOf = macOf

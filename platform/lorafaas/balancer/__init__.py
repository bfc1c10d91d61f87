"""Which invoker runs an activation: the controller's placement over the invokers' reports,
pure logic with no I/O (the broker feeds it reports and carries out its choices)."""

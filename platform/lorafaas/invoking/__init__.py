"""The seam between controller and invoker: the interface the controller invokes through
(`client.InvokerClient`) and the types both sides share (`activations`), importing neither
side's internals, so that the in-process invoker and a remote one are two implementations."""

"""The multi-machine deployment on NATS JetStream: the controller's `InvokerClient` over the
broker (`client`), the invoker-side service that drives a `LocalInvoker` (`service`), the
subjects, stream and bucket they share (`topology`), heartbeats (`heartbeats`), the message
bodies (`codec`), and the placement of an activation on an invoker (`placing`, over
`lorafaas.balancer`)."""

// Small stdlib-only programs for the real test node: the pause image, the runc wrapper,
// a test server image and an image pusher.
module loraland.dev/hack/node/tools

go 1.26.0

# The project's images (see hack/images.sh and hack/images/README.md). Included by the
# root Makefile; LORALAND_CACHE (exported) comes from it.
#   make images                          build into $LORALAND_CACHE/images (buildah storage)
#   make images REGISTRY=127.0.0.1:5000  ...and push to that registry (plain HTTP)
#   make images OCI=1                    ...and write an OCI layout ($LORALAND_CACHE/images/oci)
# Needs root (buildah, debootstrap; installed with apt-get when missing).

REGISTRY ?=
OCI ?=

.PHONY: images test-images images-background

# `make test` (as root: the image and real-node tests need it) starts the image build in
# the background before the Go builds: a cold build spends much of its time downloading,
# which overlaps the compiles. The tests that need the images run hack/images.sh again;
# its lock makes them wait for this build, which then leaves them only the push.
IMAGES_LOG := $(LORALAND_CACHE)/images/background.log
TEST_PREREQS := $(if $(filter 0,$(shell id -u)),images-background) $(TEST_PREREQS)

images-background:
	@mkdir -p $(dir $(IMAGES_LOG))
	@setsid nohup hack/images.sh >$(IMAGES_LOG) 2>&1 </dev/null &
	@echo "images: building in the background, log in $(IMAGES_LOG)"

images:
	hack/images.sh $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(OCI),--oci)

test-images: venv images
	$(PY) -m pytest tests/images -m images

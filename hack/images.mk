# The project's images (see hack/images.sh and hack/images/README.md). Included by the
# root Makefile; LORALAND_CACHE (exported) comes from it.
#   make images                          build into $LORALAND_CACHE/images (buildah storage)
#   make images REGISTRY=127.0.0.1:5000  ...and push to that registry (plain HTTP)
#   make images OCI=1                    ...and write an OCI layout ($LORALAND_CACHE/images/oci)
# Needs root (buildah, debootstrap; installed with apt-get when missing).

REGISTRY ?=
OCI ?=

.PHONY: images test-images

images:
	hack/images.sh $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(OCI),--oci)

test-images: venv images
	$(PY) -m pytest tests/images -m images

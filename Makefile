# The two set-up commands (run as root: the lab makes network namespaces,
# cgroups and bpffs pins):
#   make demo   install missing packages, build, bring up the 2-node lab demo
#   make test   install missing packages, then format check, clippy and every test
CARGO ?= cargo

.PHONY: demo test deps build lint down

deps:
	./scripts/install-deps.sh

build: deps
	$(CARGO) build --bin tollway

demo: build
	./target/debug/tollway demo

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --workspace

down:
	./target/debug/tollway lab down

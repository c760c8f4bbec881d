# workerd configuration of the e2e workerd member. Run from a directory that holds worker.js and the
# package laid out as shoal/js/ and shoal/pkg/web/ (workerd.test.mjs prepares it, and rewrites the
# `modules` list below from the package's files). The socket's address is overridden on the command
# line (--socket-addr http=127.0.0.1:0, port via --control-fd).
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .member),
    # Outbound connections (the relay on 127.0.0.1): workerd's default network service only allows
    # public addresses.
    (name = "loopback", network = (allow = ["local", "private", "public"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);

const member :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "shoal/js/workerd.js", esModule = embed "shoal/js/workerd.js"),
    (name = "shoal/js/shoal.js", esModule = embed "shoal/js/shoal.js"),
    (name = "shoal/js/rtc.js", esModule = embed "shoal/js/rtc.js"),
    (name = "shoal/pkg/web/shoal_wasm.js", esModule = embed "shoal/pkg/web/shoal_wasm.js"),
    (name = "shoal/pkg/web/shoal_wasm_bg.wasm", wasm = embed "shoal/pkg/web/shoal_wasm_bg.wasm"),
  ],
  compatibilityDate = "2025-09-01",
  globalOutbound = "loopback",
  durableObjectNamespaces = [(className = "Member", uniqueKey = "shoal-e2e-member")],
  durableObjectStorage = (inMemory = void),
  bindings = [(name = "MEMBER", durableObjectNamespace = "Member")],
);

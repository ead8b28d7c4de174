rockspec_format = "3.0"
package = "duplex"
version = "scm-1"
source = {
  url = "git+file:///dev/null",
}
description = {
  summary = "BSD client-server sockets for Lua 5.1 to 5.4 and LuaJIT: blocking style, thousands of connections, near C speed",
  detailed = [[
duplex gives Lua (5.1 to 5.4, LuaJIT) the BSD client-server socket model (listen, accept,
connect, then talk full-duplex) from a small C module. Code is written as if
it blocked; inside duplex.run each connection is a task, and thousands of
them share one process (epoll, or poll(2) elsewhere). It has TCP and Unix
sockets with LuaSocket-style reads, a server loop with connection limits and
graceful close, TLS through OpenSSL 3, datagrams, name lookups off the loop
with Happy Eyeballs, streams forwarded in C, and conds and queues for tasks.
]],
  -- No public homepage or repository yet (source.url is a placeholder too).
  license = "MIT",
  maintainer = "the duplex authors",
  labels = { "sockets", "networking", "tls", "coroutines" },
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
}
build = {
  type = "builtin",
  modules = {
    ["duplex"] = "lua/duplex/init.lua",
    ["duplex.auxlib"] = "lua/duplex/auxlib.lua",
    ["duplex.sched"] = "lua/duplex/sched.lua",
    ["duplex.sync"] = "lua/duplex/sync.lua",
    ["duplex.serve"] = "lua/duplex/serve.lua",
    ["duplex.cluster"] = "lua/duplex/cluster.lua",
    ["duplex.socket"] = "lua/duplex/socket.lua",
    ["duplex.socket_aux"] = "lua/duplex/socket_aux.lua",
    ["duplex.socket_tcp"] = "lua/duplex/socket_tcp.lua",
    ["duplex.socket_udp"] = "lua/duplex/socket_udp.lua",
    ["duplex.luasocket"] = "lua/duplex/luasocket.lua",
    ["duplex.ssl"] = "lua/duplex/ssl.lua",
    ["duplex.core"] = {
      sources = {
        "csrc/dx_buf.c", "csrc/dx_scan.c", "csrc/dx_net.c", "csrc/dx_loop.c", "csrc/dx_time.c", "csrc/dx_fd.c", "csrc/dx_sig.c", "csrc/dx_udp.c", "csrc/dx_resolver.c", "csrc/dx_tls.c", "csrc/dx_stream.c", "csrc/dx_splice.c", "csrc/dx_proxy.c", "csrc/dx_proc.c",
        "csrc/lduplex.c", "csrc/lcompat.c", "csrc/lxaux.c", "csrc/ldrive.c", "csrc/lsock.c",
        "csrc/lserver.c", "csrc/lclient.c", "csrc/lread.c", "csrc/lwrite.c", "csrc/ludp.c", "csrc/lresolve.c", "csrc/ltls.c", "csrc/lsched.c", "csrc/lforward.c",
        "csrc/lconnect.c", "csrc/lproxy.c", "csrc/ldgram.c", "csrc/lserve.c", "csrc/lwait.c", "csrc/lselect.c", "csrc/lsignal.c", "csrc/lproc.c",
      },
      defines = { "DX_TLS", "OPENSSL_API_COMPAT=30000", "OPENSSL_NO_DEPRECATED" },
      incdirs = { "csrc", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(OPENSSL_LIBDIR)" },
      libraries = { "ssl", "crypto", "pthread", "dl" },
    },
  },
}
test = { type = "busted" }

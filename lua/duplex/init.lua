-- duplex: BSD client-server sockets for Lua 5.4.
--
-- The module table. Its parts: duplex.core (C: sockets, datagrams, lookups,
-- the dispatcher), duplex.sched (tasks, join, cancel, run, onerror,
-- onsignal), duplex.sync (cond and queue) and duplex.serve (server:serve,
-- server:close(grace) and client:lines, put into the core's method tables
-- here); duplex.auxlib holds what they share. Every operation that may wait
-- is C; whether it blocks the process or yields to the scheduler is decided
-- in one place, the operation driver (csrc/ldrive.c).

local core = require "duplex.core"
local sched = require "duplex.sched"
local sync = require "duplex.sync"
local serve = require "duplex.serve"

local duplex = {
  _VERSION = core._VERSION,
  listen = core.listen,
  connect = core.connect,
  stream = core.stream,
  udp = core.udp,
  tls = core.tls,          -- nil when built without OpenSSL
  resolve = core.resolve,
  type = core.type,
  now = core.now,
  sleep = core.sleep,
  run = sched.run,
  spawn = sched.spawn,
  onerror = sched.onerror,
  onsignal = sched.onsignal,
  cond = sync.cond,
  queue = sync.queue,
}

local server, client = core.server_methods, core.client_methods
server.serve, server.close, client.lines = serve.serve, serve.close, serve.lines

return duplex

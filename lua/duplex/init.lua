-- duplex: BSD client-server sockets for Lua 5.1, 5.3, 5.4 and LuaJIT 2.1.
--
-- The module table. Its parts: duplex.core (C: sockets, datagrams, lookups,
-- the dispatcher), duplex.sched (tasks, join, cancel, run, onerror,
-- onsignal), duplex.sync (cond and queue) and duplex.serve (server:serve,
-- server:close(grace) and client:lines, put into the core's method tables
-- here); duplex.auxlib holds what they share. Each part's table has a
-- field `core`: the duplex.core it was loaded with. Every operation that
-- may wait is C; whether it blocks the process or yields to the scheduler
-- is decided in one place, the operation driver (csrc/ldrive.c).

local core = require "duplex.core"

-- A part of duplex bound to this duplex.core (its `core` field). A state
-- that loads duplex.core again (package.loaded["duplex.core"] = nil, then
-- require "duplex") gets parts of its own, as it gets metatables of its
-- own, and the first instance keeps working (spec/regress/015).
local function part(name)
  local m = require(name)
  if m.core ~= core then
    package.loaded[name] = nil
    m = require(name)
  end
  return m
end
part "duplex.auxlib"              -- first: the others require it
local sched = part "duplex.sched"
local sync = part "duplex.sync"
local serve = part "duplex.serve"

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
  pcall = sched.pcall,
  cond = sync.cond,
  queue = sync.queue,
}

local server, client = core.server_methods, core.client_methods
server.serve, server.close, client.lines = serve.serve, serve.close, serve.lines

--- duplex.cluster(opts, main): main(id, servers) in `workers` processes
--- (lua/duplex/cluster.lua; loaded when first called).
function duplex.cluster(opts, main)
  return require "duplex.cluster" (duplex, core, opts, main)
end

return duplex

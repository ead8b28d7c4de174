-- listen("unix:/path") on a path left behind by a process that died (a
-- socket file nobody accepts on) replaces it; a path a live server accepts
-- on, a path that is not a socket, and an abstract name in use still fail
-- with nil, msg, "EADDRINUSE", and leave what is there alone.
-- The owners of the paths are python3 children (or this process).
--
-- Two tests failed on d3e3369 and guard the fix (marked REGRESSION): when the path belongs
-- to a live socket that the stale check's connect cannot reach (a full
-- listen queue: EAGAIN; a datagram socket: EPROTOTYPE), listen reports that
-- connect's errno instead of EADDRINUSE (dx_listen reads errno after
-- stale_unix() has overwritten it).

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack
local defer = helpers.defer

local has_python = helpers.execute("command -v python3 >/dev/null 2>&1") == true

-- The kind of file at path ("socket", "file", "directory", "link") or nil.
local function kind(path)
  local p = assert(io.popen("stat -c %F " .. helpers.shquote(path) .. " 2>/dev/null"))
  local s = p:read("*l")
  p:close()
  if s == nil then return nil end
  if s == "socket" then return "socket" end
  if s:find("symbolic link", 1, true) then return "link" end
  if s == "directory" then return "directory" end
  if s:find("regular", 1, true) then return "file" end
  return s
end

-- A fresh path, removed (whatever it is) when the test ends.
local function fresh_path()
  local path = helpers.tmpname()
  defer(function() helpers.execute("rm -rf " .. helpers.shquote(path)) end)
  return path
end

local function python(script, ...)
  local args = {}
  for i = 1, select("#", ...) do args[i] = helpers.shquote(select(i, ...)) end
  local proc = helpers.spawn_process("python3 -u -c " .. helpers.shquote(script)
    .. " " .. table.concat(args, " "))
  defer(function() proc:close() end)
  return proc
end

-- A python3 server on a Unix path that answers each line with "py <line>"
-- and takes connections one after another (an empty one ends at once).
local PY_ECHO = [[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(16)
print("READY", flush=True)
while True:
    c, _ = s.accept()
    f = c.makefile("rb")
    for line in f:
        c.sendall(b"py " + line)
    f.close()
    c.close()
]]

-- listen on path must work: a server that accepts and talks, and that
-- removes the path when closed.
local function assert_serves(path)
  local srv, msg, code = duplex.listen("unix:" .. path)
  assert.same({ "server" }, { duplex.type(srv), msg, code })
  defer(function() srv:close() end)
  assert.same({ path, nil, "unix" }, { srv:getsockname() })
  local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
  local p = assert(srv:accept(5))
  defer(function() helpers.close(c, p) end)
  assert(c:write("ping\n"))
  assert.equal("ping", p:read("l"))
  assert(p:write("pong\n"))
  assert.equal("pong", c:read("l"))
  assert.is_true(srv:close())
  assert.is_nil(kind(path))
end

-- listen on addr must fail with nil, msg, "EADDRINUSE".
local function assert_in_use(addr)
  local r, msg, code = duplex.listen(addr)
  assert.same({ nil, "EADDRINUSE" }, { r, code })
  assert.equal("listen " .. addr:gsub("^unix:", "") .. ": Address already in use", msg)
end

describe("listen on a stale Unix socket path", function()
  after_each(helpers.run_cleanups)
  helpers.track_fds()

  it("replaces the path of a listener killed with SIGKILL", function()
    if not has_python then pending("python3 not installed") return end
    local path = fresh_path()
    local proc = python([[
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(16)
print("READY", flush=True)
time.sleep(60)
]], path)
    assert.equal("READY", proc:read("l"))
    proc:kill("KILL")
    assert.same({ nil, "signal", 9 }, { proc:wait(10) })
    assert.equal("socket", kind(path))           -- left behind
    assert_serves(path)
  end)

  it("replaces the path of a socket that was bound, never listened, and closed", function()
    if not has_python then pending("python3 not installed") return end
    local path = fresh_path()
    assert.is_true(helpers.execute("python3 -c " .. helpers.shquote(
      "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()")
      .. " " .. helpers.shquote(path)))
    assert.equal("socket", kind(path))
    assert_serves(path)
  end)

  it("replaces the path of a duplex server in a child that was killed", function()
    local path = fresh_path()
    local script = string.format([[
local duplex = require "duplex"
local srv = assert(duplex.listen(%q))
io.stdout:write("READY\n")
io.stdout:flush()
duplex.sleep(60)
]], "unix:" .. path)
    local proc = helpers.spawn_process(helpers.lua .. " -e " .. helpers.shquote(script))
    defer(function() proc:close() end)
    assert.equal("READY", proc:read("l"))
    proc:kill("KILL")
    assert.same({ nil, "signal", 9 }, { proc:wait(10) })
    assert.equal("socket", kind(path))
    assert_serves(path)
  end)
end)

describe("listen on a Unix path in use", function()
  after_each(helpers.run_cleanups)
  helpers.track_fds()

  it("fails with EADDRINUSE while a python server accepts on it; that server still works", function()
    if not has_python then pending("python3 not installed") return end
    local path = fresh_path()
    local proc = python(PY_ECHO, path)
    assert.equal("READY", proc:read("l"))
    assert_in_use("unix:" .. path)
    assert.equal("socket", kind(path))
    local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
    defer(function() c:close() end)
    c:settimeout(5)
    assert(c:write("still there\n"))
    assert.equal("py still there", c:read("l"))
  end)

  it("fails with EADDRINUSE while a duplex server in this process listens on it; that server still works", function()
    local path = fresh_path()
    local live = assert(duplex.listen("unix:" .. path))
    defer(function() live:close() end)
    assert_in_use("unix:" .. path)
    assert_in_use("unix:" .. path)
    assert.equal("socket", kind(path))
    -- the live server serves as before (an empty connection may come first:
    -- the check for a stale path connects)
    local r = {}
    duplex.run(function()
      local serving = duplex.spawn(live.serve, live, function(c)
        for line in c:lines() do c:write("live ", line, "\n") end
      end)
      local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
      c:settimeout(5)
      assert(c:write("hello\n"))
      r.answer = c:read("l")
      c:close()
      live:close()
      r.serve = pack(serving:join(5))
    end)
    assert.equal("live hello", r.answer)
    assert.same({ n = 2, true, true }, r.serve)
  end)

  -- REGRESSION (failed on d3e3369, fixed since): the stale check's connect
  -- overwrites errno, so listen reports the connect's error (EAGAIN).
  it("fails with EADDRINUSE while a live server's listen queue is full; the path stays", function()
    if not has_python then pending("python3 not installed") return end
    local path = fresh_path()
    local proc = python([[
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(0)
queued = []
while True:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(sys.argv[1])
    except BlockingIOError:
        break
    queued.append(c)
print("READY", len(queued), flush=True)
time.sleep(60)
]], path)
    assert.matches("^READY %d+$", proc:read("l"))
    assert.equal("socket", kind(path))
    assert_in_use("unix:" .. path)
    assert.equal("socket", kind(path))
  end)

  -- REGRESSION (failed on d3e3369, fixed since): as above, listen reports the stale
  -- check's EPROTOTYPE.
  it("fails with EADDRINUSE while a datagram socket is bound to it; the datagram socket still works", function()
    if not has_python then pending("python3 not installed") return end
    local path = fresh_path()
    local proc = python([[
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("READY", flush=True)
print("GOT", s.recv(100).decode(), flush=True)
]], path)
    assert.equal("READY", proc:read("l"))
    local r, msg, code = duplex.listen("unix:" .. path)
    assert.equal("socket", kind(path))            -- never removed
    assert.is_true(helpers.execute("python3 -c " .. helpers.shquote(
      "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'ping', sys.argv[1])")
      .. " " .. helpers.shquote(path)))
    assert.equal("GOT ping", proc:read("l"))
    assert.same({ nil, "EADDRINUSE" }, { r, code })
    assert.equal("listen " .. path .. ": Address already in use", msg)
  end)

  it("fails with EADDRINUSE on a regular file, and leaves it untouched", function()
    local path = fresh_path()
    local f = assert(io.open(path, "wb"))
    f:write("precious\n")
    f:close()
    assert_in_use("unix:" .. path)
    f = assert(io.open(path, "rb"))
    assert.equal("precious\n", f:read("*a"))
    f:close()
  end)

  it("fails with EADDRINUSE on an empty regular file, a directory and symbolic links", function()
    local path = fresh_path()
    assert(io.open(path, "wb")):close()
    assert_in_use("unix:" .. path)
    assert.equal("file", kind(path))
    os.remove(path)
    assert.is_true(helpers.execute("mkdir " .. helpers.shquote(path)))
    assert_in_use("unix:" .. path)
    assert.equal("directory", kind(path))
    helpers.execute("rmdir " .. helpers.shquote(path))
    -- a symbolic link to a stale socket: the link is not a socket
    local target = fresh_path()
    assert.is_true(helpers.execute("python3 -c " .. helpers.shquote(
      "import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()")
      .. " " .. helpers.shquote(target)))
    assert.is_true(helpers.execute("ln -s " .. helpers.shquote(target) .. " " .. helpers.shquote(path)))
    assert_in_use("unix:" .. path)
    assert.equal("link", kind(path))
    assert.equal("socket", kind(target))
    -- a dangling one
    os.remove(target)
    assert_in_use("unix:" .. path)
    assert.equal("link", kind(path))
  end)

  it("fails with EADDRINUSE on an abstract name in use (by this process or a python one)", function()
    local name = string.format("unix:@duplex-spec41-%d-%d", os.time(), math.random(1, 1e9))
    local live = assert(duplex.listen(name))
    defer(function() live:close() end)
    assert_in_use(name)
    -- the first one still accepts
    local c = assert(duplex.connect(name, nil, { timeout = 5 }))
    local p = assert(live:accept(5))
    defer(function() helpers.close(c, p) end)
    assert(c:write("abstract\n"))
    assert.equal("abstract", p:read("l"))
    if not has_python then return end
    -- bound but not listening (nothing accepts on it, yet not stale: an
    -- abstract name goes away with its socket)
    local name2 = name .. "-py"
    local proc = python([[
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1])
print("READY", flush=True)
time.sleep(60)
]], name2:sub(#"unix:@" + 1))
    assert.equal("READY", proc:read("l"))
    assert_in_use(name2)
    proc:kill("KILL")
    proc:wait(10)
    -- once its owner is gone, the name is free
    local again = assert(duplex.listen(name2))
    again:close()
  end)
end)

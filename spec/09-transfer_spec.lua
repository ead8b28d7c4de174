-- spec/09-transfer_spec.lua: 64 MiB of binary data (every byte value,
-- NUL and "\n" included, generated deterministically) crosses a connection
-- intact, in both directions and both at once, through every read style:
-- read(n), readsome, read("a"), read("L"), and one huge write or many small
-- ones. The peer is a python3 child (a blocking peer in this process would
-- deadlock), which generates the same data with the same algorithm (no
-- 64 MiB temp file to leave behind) and compares what it receives.

local duplex = require "duplex"
local helpers = require "spec.helpers"
local pack, unpack = helpers.pack, helpers.unpack

local MiB = 1024 * 1024
local SIZE = 64 * MiB
local TIMEOUT = 30            -- per call; a healthy run takes about a second

local function all(...) return pack(...) end

-- The data: blocks of a prime length (so they do not line up with buffer
-- sizes), each starting with its big-endian index so a lost, repeated or
-- reordered block shows, the rest pseudo-random bytes from an LCG.
-- make_data in PY_PROLOGUE below must produce the very same bytes.
local function make_data()
  local BLOCK = 65521
  local bytes, parts = {}, {}
  local x = 20240601
  for i = 1, BLOCK - 4 do
    x = helpers.lcg(x)                 -- (x * 1103515245 + 12345) & 0x7fffffff
    bytes[#bytes + 1] = math.floor(x / 65536) % 256
    if #bytes == 4096 or i == BLOCK - 4 then
      parts[#parts + 1] = string.char(unpack(bytes))
      bytes = {}
    end
  end
  local body = "\0\n\r\n\255" .. table.concat(parts):sub(6)
  local blocks = {}
  for i = 0, math.floor(SIZE / BLOCK) do
    blocks[#blocks + 1] = helpers.be(i, 4) .. body
  end
  return table.concat(blocks):sub(1, SIZE)
end

-- nil if a == b, else the offset (0-based) of the first difference.
local function first_diff(a, b)
  if a == b then return nil end
  local n = math.min(#a, #b)
  local step = 65536
  for off = 0, n - 1, step do
    if a:sub(off + 1, off + step) ~= b:sub(off + 1, off + step) then
      for i = off + 1, math.min(off + step, n) do
        if a:byte(i) ~= b:byte(i) then return i - 1 end
      end
    end
  end
  return n
end

-- Reads until EOF with next_chunk(), comparing each piece with data as it
-- arrives; returns total bytes, offset of the first difference or nil.
local function receive_and_compare(data, next_chunk)
  local off = 0
  for _ = 1, 2 * SIZE do       -- bounded: every turn consumes >= 1 byte
    local chunk, msg, code = next_chunk(off)
    if chunk == nil then
      assert.same(all(nil, nil), all(msg, code))   -- EOF, not an error
      return off, nil
    end
    assert.equal("string", type(chunk))
    if #chunk == 0 then error("empty chunk at offset " .. off) end
    local want = data:sub(off + 1, off + #chunk)
    if chunk ~= want then
      return off + #chunk, off + (first_diff(chunk, want) or #want)
    end
    off = off + #chunk
  end
  error("too many reads")
end

local function writefile(content)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(content)
  f:close()
  return name
end

local PY_PROLOGUE = [[
import os, signal, socket, struct, sys, threading
signal.alarm(90)

def make_data():                 # the same bytes as make_data in Lua
    BLOCK, SIZE = 65521, 64 << 20
    x, out = 20240601, bytearray()
    for _ in range(BLOCK - 4):
        x = (x * 1103515245 + 12345) & 0x7fffffff
        out.append((x >> 16) & 0xff)
    body = b"\0\n\r\n\xff" + bytes(out[5:])
    blocks = [struct.pack(">I", i) + body for i in range(SIZE // BLOCK + 1)]
    return b"".join(blocks)[:SIZE]

def recv_all(s):
    parts = []
    while True:
        b = s.recv(1 << 20)
        if not b:
            return b"".join(parts)
        parts.append(b)

def verdict(got, want):
    if got == want:
        return "OK %d" % len(got)
    n = min(len(got), len(want))
    i = next((i for i in range(n) if got[i] != want[i]), n)
    return "BAD %d at %d" % (len(got), i)
]]

local function python(code, ...)
  local script = writefile(PY_PROLOGUE .. code)
  local args = {}
  for i = 1, select("#", ...) do args[i] = helpers.shquote(select(i, ...)) end
  local proc = helpers.spawn_process("python3 -u " .. script .. " "
    .. table.concat(args, " ") .. " 2>&1")
  local close = proc.close
  function proc:close()        -- (helpers.scope closes it)
    close(self)
    os.remove(script)
  end
  return proc
end

-- python connects to PORT, receives until EOF, compares with the data,
-- sends the verdict back and prints it.
local PY_RECEIVER = [[
want = make_data()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
got = recv_all(s)
v = verdict(got, want)
s.sendall(v.encode() + b"\n")
s.close()
print(v)
]]

-- python listens, prints its port, sends the data to the first client,
-- shuts down its sending side and waits for the client's EOF.
local PY_SENDER = [[
data = make_data()
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1])
srv.settimeout(60)
s, _ = srv.accept()
s.settimeout(60)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
rest = recv_all(s)
s.close()
print("sent", len(data), "then got", len(rest))
]]

describe("64 MiB transfer #timing", function()
  local data

  lazy_setup(function()
    data = make_data()
    assert.equal(SIZE, #data)
  end)

  lazy_teardown(function()
    data = nil
    collectgarbage()
  end)

  it("the test data holds every byte value, NUL included", function()
    local seen = {}
    for i = 1, 65521 do seen[data:byte(i)] = true end
    for b = 0, 255 do assert.is_true(seen[b], "byte " .. b) end
    assert.equal("\0\0\0\1", data:sub(65522, 65525))
  end)

  describe("duplex -> python", function()
    local function send_with(writer)
      local own = helpers.scope(); finally(own.close)
      local srv, port = own(helpers.server())
      local py = own(python(PY_RECEIVER, port))
      local c = own(assert(srv:accept(10)))
      c:settimeout(TIMEOUT)
      writer(c)
      assert.equal(c, c:shutdown("w"))
      local verdict = c:read("l")
      assert.equal("OK " .. SIZE, verdict)
      assert.equal("", c:read("a"))
      assert.equal("OK " .. SIZE, py:read("l"))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end

    it("in one write() call", function()
      send_with(function(c)
        assert.same(all(c), all(c:write(data)))
      end)
    end)

    it("in many writes of odd sizes, several strings per call", function()
      local sizes = { 1, 7, 4096, 65537, MiB + 3, 2, 100000, 3 * MiB - 1 }
      send_with(function(c)
        local off, k = 0, 0
        while off < SIZE do
          k = k + 1
          local n = sizes[(k - 1) % #sizes + 1]
          local a = data:sub(off + 1, off + n)
          local b = data:sub(off + n + 1, off + n + 13)
          local d = data:sub(off + n + 14, off + 2 * n + 13)
          assert.same(all(c), all(c:write(a, b, d)))
          off = off + #a + #b + #d
          assert.is_true(k < 100000)
        end
        assert.equal(SIZE, off)
      end)
    end)
  end)

  describe("python -> duplex", function()
    local function receive_with(reader)
      local own = helpers.scope(); finally(own.close)
      local py = own(python(PY_SENDER))
      local port = assert(helpers.tointeger(tonumber(py:read("l"))), "python gave no port")
      local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 10 })))
      c:settimeout(TIMEOUT)
      local total, diff = reader(c)
      assert.is_nil(diff, "first difference at offset " .. tostring(diff))
      assert.equal(SIZE, total)
      assert.is_true(c:close())
      assert.equal(("sent %d then got 0"):format(SIZE), py:read("l"))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end

    it("with read(n) of varying n", function()
      local sizes = { 1, 3, 100, 4096, 65536, 65537, MiB, 7, 3 * MiB + 1 }
      local k = 0
      receive_with(function(c)
        return receive_and_compare(data, function()
          k = k + 1
          return c:read(sizes[(k - 1) % #sizes + 1])
        end)
      end)
    end)

    it("with readsome(max)", function()
      local maxes = { 1, 10, 65536, 1000, nil }
      local k = 0
      receive_with(function(c)
        return receive_and_compare(data, function()
          k = k + 1
          local max = maxes[(k - 1) % 5 + 1]
          local chunk, msg, code = c:readsome(max)
          if chunk then assert.is_true(#chunk <= (max or 262144), "readsome returned " .. #chunk) end
          return chunk, msg, code
        end)
      end)
    end)

    it("with read('L') (binary lines, kept whole)", function()
      receive_with(function(c)
        return receive_and_compare(data, function() return c:read("L") end)
      end)
    end)

    it("with read('a')", function()
      receive_with(function(c)
        local got = c:read("a")
        assert.equal("string", type(got))
        local diff = first_diff(got, data)
        -- at EOF read("a") returns "", read(n) nil
        assert.equal("", c:read("a"))
        assert.is_nil(c:read(1))
        return #got, diff
      end)
    end)
  end)

  describe("both ways at once (tasks in duplex.run)", function()
    it("duplex sends and receives 64 MiB simultaneously with a python peer", function()
      local own = helpers.scope(); finally(own.close)
      -- python sends the data from a thread while it receives and checks
      local srv, port = own(helpers.server())
      local py = python([[
want = make_data()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
def send():
    s.sendall(want)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = recv_all(s)
t.join()
s.close()
print(verdict(got, want))
]], port)
      own(py)

      local total, diff = duplex.run(function()
        local c = own(assert(srv:accept(10)))
        c:settimeout(TIMEOUT)
        local writer = duplex.spawn(function()
          assert(c:write(data))
          assert(c:shutdown("w"))
          return "written"
        end)
        local t, d = receive_and_compare(data, function() return c:readsome() end)
        assert.same(all(true, "written"), all(writer:join(TIMEOUT)))
        return t, d
      end)
      assert.is_nil(diff, "first difference at offset " .. tostring(diff))
      assert.equal(SIZE, total)
      assert.equal("OK " .. SIZE, py:read("l"))
      assert.same(all(true, "exit", 0), all(py:wait(10)))
    end)

    it("between two duplex ends in one process", function()
      local own = helpers.scope(); finally(own.close)
      local total, diff, back = duplex.run(function()
        local srv, port = own(helpers.server())
        local writer = duplex.spawn(function()
          local c = own(assert(duplex.connect("127.0.0.1", port, { timeout = 10 })))
          c:settimeout(TIMEOUT)
          assert.same(all(c), all(c:write(data)))
          assert.same(all(c), all(c:shutdown("w")))
          return c:read("a")
        end)
        local p = own(assert(srv:accept(10)))
        p:settimeout(TIMEOUT)
        local sizes = { 1, 4096, 65537, MiB + 1 }
        local k = 0
        local t, d = receive_and_compare(data, function()
          k = k + 1
          return p:read(sizes[(k - 1) % #sizes + 1])
        end)
        p:write("received ", t, "\n")
        p:close()
        local ok, msg = writer:join(TIMEOUT)
        assert.is_true(ok, msg)
        return t, d, msg
      end)
      assert.is_nil(diff, "first difference at offset " .. tostring(diff))
      assert.equal(SIZE, total)
      assert.equal("received " .. SIZE .. "\n", back)
    end)
  end)
end)

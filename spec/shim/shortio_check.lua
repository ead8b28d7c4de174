-- spec/shim/shortio_check.lua: duplex through short, interrupted socket I/O.
--
-- Meant to run under the LD_PRELOAD shim spec/shim/shortio.c, which cuts
-- every socket call to 1..7 bytes and fails one in eight with EINTR; a
-- correct duplex only waits after EAGAIN and retries EINTR, so everything
-- below must still arrive intact. Run it with spec/shim/run.sh (builds the
-- shim, sets LD_PRELOAD and the module paths, bounds the whole run), or by
-- hand from the repository root:
--   LD_PRELOAD=./build/shim/shortio.so LUA_PATH='./lua/?.lua;./lua/?/init.lua;;' \
--     LUA_CPATH='./build/?.so;;' lua5.4 spec/shim/shortio_check.lua [BYTES]
-- A standalone script rather than a busted spec, so that nothing but the
-- code under test runs under the shim (files, pipes and terminals pass
-- through it untouched anyway).
--
-- Parts (all on 127.0.0.1, port 0; every operation has a timeout, so a
-- hang ends as ETIMEDOUT instead of hanging):
--   probe  outside duplex.run: is the shim active (a readsome of 100 sent
--          bytes returns at most SHORTIO_MAX of them)?
--   a      inside duplex.run: BYTES (default 16 MiB) of pseudo-random bytes
--          from a writer task (writes of varying sizes, an empty write and
--          one multi-argument write of 100 pieces) to a reader task
--          (readsome, read(n), read(n1, n2)); the received string must equal
--          the sent one and then read(1) must see end of stream.
--   b      inside duplex.run: a 24-line exchange (lengths 0..65537, some
--          "\r\n" endings, one line only "\r") read with read("l"),
--          read("L"), lines(), readuntil("\n") and read("l", "L"), echoed
--          back and read again the same ways; every value must be exact,
--          and nothing may follow the last echo.
--   c      outside duplex.run (blocking mode): the same exchange with a
--          python3 echo peer in a child process (not under the shim), one
--          line at a time (both ends in one process cannot both block).
--   d      inside duplex.run: a proxy: two client:forward tasks between two
--          pairs move BYTES/8 one way and BYTES/32 the other at once, each
--          side half-closing when done; both streams intact, both counts
--          exact.
--   e      inside duplex.run: the same two streams (BYTES/8, BYTES/32) over
--          TLS between a duplex client and server (spec/tls_pki.lua's
--          certificates; skipped in a build without TLS).
--
-- Settings (environment): SHORTIO_BYTES (or argument 1; suffix K or M) the
-- size for part a (d and e: an eighth one way, a 32nd the other); SHORTIO_PARTS
-- (default "abcde") which parts to run;
-- SHORTIO_OPTIMEOUT (default 10) seconds for each socket operation;
-- SHORTIO_PARTLIMIT (default 300) seconds a part may take before it stops
-- itself; SHORTIO_MAX as for the shim (used by the probe). Prints a line per
-- part with its time; exits 0 when every part passed, 1 otherwise.

local duplex = require "duplex"

-- (one source for Lua 5.1, 5.3, 5.4 and LuaJIT)
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

local function size_of(s)
  if s == nil then return nil end
  local n, unit = tostring(s):match("^(%d+)([KkMm]?)$")
  assert(n, "bad size: " .. tostring(s))
  n = tonumber(n)
  if unit == "K" or unit == "k" then n = n * 1024 end
  if unit == "M" or unit == "m" then n = n * 1024 * 1024 end
  return n
end

local BYTES = size_of(arg[1] or os.getenv("SHORTIO_BYTES")) or 16 * 1024 * 1024
local PARTS = os.getenv("SHORTIO_PARTS") or "abcde"
local OPTIMEOUT = tonumber(os.getenv("SHORTIO_OPTIMEOUT") or "10")
local PARTLIMIT = tonumber(os.getenv("SHORTIO_PARTLIMIT") or "300")
local SHIM_MAX = tonumber(os.getenv("SHORTIO_MAX") or "7")
local PRELOAD = os.getenv("LD_PRELOAD") or ""

local now = duplex.now
local T0 = now()

local function say(fmt, ...)
  io.stdout:write(string.format("[%7.2fs] " .. fmt, now() - T0, ...), "\n")
  io.stdout:flush()
end

-- Errors inside tasks reach us through join; keep stderr quiet.
duplex.onerror(function() end)

-- A deterministic generator of its own (x -> (x * 1103515245 + 12345) mod
-- 2^31, exact where numbers are doubles too), independent of math.random's
-- algorithm; its high bits pick.
local function rng(seed)
  local x = seed % 2147483648
  local lo, hi = 1103515245 % 65536, math.floor(1103515245 / 65536)
  return function(n)          -- an integer in 1..n
    x = (x * lo + (x * hi % 32768) * 65536 + 12345) % 2147483648
    return math.floor(x / 65536) % n + 1
  end
end

-- nil if a == b, else the 0-based offset of the first difference.
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

local function show(s)
  if #s > 40 then
    return string.format("%d bytes %q..%q", #s, s:sub(1, 16), s:sub(-16))
  end
  return string.format("%q", s)
end

-- A connected pair on loopback with OPTIMEOUT on both ends.
local function pair()
  local srv = assert(duplex.listen("127.0.0.1", 0))
  local _, port = srv:getsockname()
  local c = assert(duplex.connect("127.0.0.1", port, { timeout = OPTIMEOUT }))
  local p = assert(srv:accept(OPTIMEOUT))
  c:settimeout(OPTIMEOUT)
  p:settimeout(OPTIMEOUT)
  return c, p, srv
end

local function close_all(...)
  for i = 1, select("#", ...) do
    local o = select(i, ...)
    if o ~= nil then pcall(o.close, o) end
  end
end

-- Raise a message that says what failed, where, and after how long.
local function failed(what, t_start, msg, code, extra)
  error(string.format("%s failed after %.2fs: %s (%s)%s", what, now() - t_start,
                      tostring(msg), tostring(code), extra or ""), 0)
end

local function check_deadline(deadline, what)
  if now() > deadline then
    error(string.format("%s: part limit of %gs exceeded (no hang, just slow)", what, PARTLIMIT), 0)
  end
end

-- probe ------------------------------------------------------------------

local function probe()
  local c, p, srv = pair()
  local ok, err = pcall(function()
    local r, msg, code = c:write(string.rep("x", 100))
    if r ~= c then failed("probe write", now(), msg, code) end
    local t = now()
    local s
    s, msg, code = p:readsome()
    if s == nil then failed("probe readsome", t, msg, code) end
    return #s
  end)
  close_all(c, p, srv)
  if not ok then error(err, 0) end
  local n = err
  if PRELOAD:find("shortio", 1, true) then
    if n > SHIM_MAX then
      error(string.format("LD_PRELOAD=%s but readsome returned %d bytes at once: the shim is not active", PRELOAD, n), 0)
    end
    return string.format("shim active: readsome of 100 sent bytes returned %d", n)
  end
  return string.format("NO SHIM (LD_PRELOAD=%q): readsome of 100 sent bytes returned %d", PRELOAD, n)
end

-- part a: bulk transfer ----------------------------------------------------

local function make_data(n)
  local parts = {}
  local char, rnd, floor = string.char, math.random, math.floor
  math.randomseed(20240601)
  for i = 1, math.floor((n + 62) / 63) do        -- 63 bytes: 21 draws of 3
    local b = {}
    for k = 1, 61, 3 do
      local v = rnd(0, 16777215)
      b[k], b[k + 1], b[k + 2] = v % 256, floor(v / 256) % 256, floor(v / 65536)
    end
    parts[i] = char(unpack(b))
  end
  local s = table.concat(parts)
  if #s > n then s = s:sub(1, n) end
  return s
end

local function part_a()
  local t_gen = now()
  local data = make_data(BYTES)
  say("a: generated %d bytes in %.2fs", #data, now() - t_gen)
  local n = #data
  local deadline = now() + PARTLIMIT
  local stats = {}
  local t_start = now()
  local res = pack(duplex.run(function()
    local c, p, srv = pair()
    local writer = duplex.spawn(function()
      local r = rng(0xA11CE)
      local sizes = { 1, 2, 7, 8, 9, 100, 1000, 4095, 4096, 65535, 65536, 65537,
                      200000, 1048576 }
      local pos, k = 1, 0
      while pos <= n do
        check_deadline(deadline, "a: writer")
        k = k + 1
        local t = now()
        local ok, msg, code, done, desc
        if k == 3 then                        -- an empty write
          desc = "write(\"\")"
          ok, msg, code, done = c:write("")
        elseif k == 5 then                    -- 100 pieces (more than one iovec batch)
          local pieces, len = {}, 0
          for i = 1, 100 do
            local l = (i % 10 == 0) and 0 or r(3000)
            l = math.min(l, n - (pos + len) + 1)
            pieces[i] = data:sub(pos + len, pos + len + l - 1)
            len = len + l
          end
          desc = string.format("write of 100 pieces, %d bytes", len)
          ok, msg, code, done = c:write(unpack(pieces))
          if ok then pos = pos + len end
        else
          local l = math.min(sizes[r(#sizes)], n - pos + 1)
          desc = string.format("write of %d bytes", l)
          ok, msg, code, done = c:write(data:sub(pos, pos + l - 1))
          if ok then pos = pos + l end
        end
        if not ok then
          failed(string.format("a: writer, call #%d (%s) at offset %d", k, desc, pos - 1),
                 t, msg, code, string.format(", %d bytes of this call written", done or -1))
        end
      end
      stats.writes = k
      assert(c:shutdown("w"))
      return pos - 1
    end)
    local reader = duplex.spawn(function()
      local r = rng(0xB0B)
      local parts, got, k = {}, 0, 0
      while got < n do
        check_deadline(deadline, "a: reader")
        k = k + 1
        local left = n - got
        local mode = r(16)
        if k <= 2 then mode = k end           -- both rarer kinds early, whatever the size
        local t = now()
        local s, s2, msg, code, desc
        if mode == 1 then                     -- a burst of readsome
          for _ = 1, 8 do
            if got >= n then break end
            local max = ({ 1, 7, 100, 65536 })[r(4)]
            desc = string.format("readsome(%d)", max)
            t = now()
            s, msg, code = p:readsome(max)
            if s == nil then break end
            parts[#parts + 1] = s
            got = got + #s
          end
        elseif mode == 2 and left >= 2 then   -- two counts in one call
          local a = r(math.min(left - 1, 50000))
          local b = r(math.min(left - a, 50000))
          desc = string.format("read(%d, %d)", a, b)
          s, s2, msg = p:read(a, b)
          if s == nil then msg, code = s2, msg end
          if s ~= nil then
            if s2 == nil or #s ~= a or #s2 ~= b then
              error(string.format("a: reader: %s returned %d and %s bytes", desc, #s,
                                  s2 and #s2 or "nil"), 0)
            end
            parts[#parts + 1] = s
            parts[#parts + 1] = s2
            got = got + a + b
          end
        else
          local want = math.min(left, ({ 1, 5, 4096, 65536, 300000 })[r(5)])
          desc = string.format("read(%d)", want)
          s, msg, code = p:read(want)
          if s ~= nil then
            if #s ~= want then
              error(string.format("a: reader: %s returned %d bytes", desc, #s), 0)
            end
            parts[#parts + 1] = s
            got = got + #s
          end
        end
        if s == nil then
          failed(string.format("a: reader, call #%d (%s) with %d of %d bytes received", k, desc, got, n),
                 t, msg, code)
        end
        if #parts > 4096 then parts = { table.concat(parts) } end
      end
      stats.reads = k
      local t = now()
      local e, msg, code = p:read(1)
      if e ~= nil or msg ~= nil then
        failed("a: reader, read(1) after the last byte (end of stream expected)", t,
               e and ("got " .. show(e)) or msg, code)
      end
      return table.concat(parts)
    end)
    local w = pack(writer:join())
    local rd = pack(reader:join())
    close_all(c, p, srv)
    return w, rd
  end))
  local took = now() - t_start
  local w, rd = res[1], res[2]
  local errs = {}
  if not w[1] then errs[#errs + 1] = tostring(w[2]) end
  if not rd[1] then errs[#errs + 1] = tostring(rd[2]) end
  if #errs > 0 then error(table.concat(errs, "\n    "), 0) end
  local got = rd[2]
  local d = first_diff(data, got)
  if d then
    error(string.format("a: received %d bytes, sent %d; first difference at offset %d", #got, n, d), 0)
  end
  return string.format("%d bytes intact in %.2fs (%.2f MiB/s; %d writes, %d reader calls)",
                       n, took, n / took / 1048576, stats.writes, stats.reads)
end

-- parts b and c: the line exchange ----------------------------------------

-- Lines: a body (no "\n", no "\r" at its end) and an ending.
local function make_lines()
  local lens = { 0, 1, 2, 7, 8, 13, 64, 100, 255, 1000, 4095, 4096, 10000, 30000,
                 65537, 3, 0, 5, 200, 17, 1, 50, 9000, 6 }
  local r = rng(0x11E5)
  local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \t\r\0\255-_.,;:"
  local lines = {}
  for i, len in ipairs(lens) do
    local b = {}
    for j = 1, len do
      local ch = r(#chars)
      if j == len then ch = r(#chars - 12) end  -- not "\r" (nor other specials) last
      b[j] = chars:sub(ch, ch)
    end
    local ending = (i % 3 == 0 or i == 17) and "\r\n" or "\n"   -- line 17: "\r\n" only
    lines[i] = { body = table.concat(b), ending = ending }
  end
  return lines
end

-- The methods a side reads with, in turn; "pair" is read("l", "L") for a
-- line and the next.
local METHODS = { "l", "L", "lines", "until", "pair" }

-- What method m returns for the full line s (which ends in "\n").
local function expect(m, s)
  if m == "L" then return s end
  if m == "until" then return s:sub(1, -2) end
  return (s:gsub("\r?\n$", ""))         -- "l", "lines"
end

-- Read the next one or two lines of cl with method m (it is cl:lines()).
-- Returns the values read (a table), or raises with the details.
local function read_with(cl, it, m, who, i)
  local t = now()
  local a, b, c
  if m == "l" then a, b, c = cl:read("l")
  elseif m == "L" then a, b, c = cl:read("L")
  elseif m == "until" then a, b, c = cl:readuntil("\n")
  elseif m == "lines" then
    local ok, v = pcall(it)
    if not ok then failed(string.format("%s: line %d via lines()", who, i), t, v, "raised") end
    if v == nil then failed(string.format("%s: line %d via lines()", who, i), t, "end of stream", nil) end
    return { v }
  elseif m == "pair" then
    local x, y, z = cl:read("l", "L")
    if x == nil then failed(string.format("%s: lines %d-%d via read(\"l\", \"L\")", who, i, i + 1), t, y, z) end
    if y == nil then failed(string.format("%s: line %d via read(\"l\", \"L\")", who, i + 1), t, "end of stream", nil) end
    return { x, y }
  end
  if a == nil then
    failed(string.format("%s: line %d via %s", who, i, m), t, b or "end of stream", c)
  end
  return { a }
end

local function same(who, i, m, want, got)
  if want ~= got then
    error(string.format("%s: line %d via %s: want %s, got %s (first difference at %s)",
                        who, i, m, show(want), show(got), tostring(first_diff(want, got))), 0)
  end
end

-- The methods the echo side reads lines 1..n with: a list of groups
-- { method, first line }.
local function echo_plan(n)
  local plan, i, k = {}, 1, 0
  while i <= n do
    k = k + 1
    local m = METHODS[(k - 1) % #METHODS + 1]
    if m == "pair" and i == n then m = "L" end
    plan[#plan + 1] = { m = m, i = i }
    i = i + (m == "pair" and 2 or 1)
  end
  return plan
end

-- What the echo side sends back for each line: what it read ("L" as is,
-- the others with "\n" appended).
local function echoes_of(lines)
  local echoed = {}
  for _, g in ipairs(echo_plan(#lines)) do
    local ms = g.m == "pair" and { "l", "L" } or { g.m }
    for j, m in ipairs(ms) do
      local L = lines[g.i + j - 1]
      local v = expect(m, L.body .. L.ending)
      echoed[g.i + j - 1] = m == "L" and v or v .. "\n"
    end
  end
  return echoed
end

-- The echo side (inside run): read each line with its method, check it,
-- echo what was read ("L" as is, the others with "\n" appended). Returns
-- the echoed lines.
local function echo_side(p, lines, deadline)
  local it = p:lines()
  local echoed = {}
  for _, g in ipairs(echo_plan(#lines)) do
    check_deadline(deadline, "b: echo side")
    local m, i = g.m, g.i
    local vals = read_with(p, it, m, "b: echo side", i)
    local ms = m == "pair" and { "l", "L" } or { m }
    for j, v in ipairs(vals) do
      local n = i + j - 1
      same("b: echo side", n, ms[j], expect(ms[j], lines[n].body .. lines[n].ending), v)
      local e = ms[j] == "L" and v or v .. "\n"
      echoed[n] = e
      local t = now()
      local ok, msg, code, done
      if ms[j] == "L" then ok, msg, code, done = p:write(v)
      else ok, msg, code, done = p:write(v, "\n") end
      if not ok then
        failed(string.format("b: echo side, echo of line %d (%d bytes)", n, #e), t, msg, code,
               string.format(", %s bytes of it written", tostring(done)))
      end
    end
  end
  local t = now()
  local x, msg, code = p:read("l")
  if x ~= nil or msg ~= nil then
    failed("b: echo side, read after the last line (end of stream expected)", t,
           x and ("got " .. show(x)) or msg, code)
  end
  local ok
  ok, msg, code = p:shutdown("w")
  if not ok then failed("b: echo side, shutdown", now(), msg, code) end
  return echoed
end

-- Write lines[first..last] with c in varied ways (one line per write, body
-- and ending as two arguments, two lines in one write).
local function write_lines(c, lines, first, last, who, deadline)
  local i = first
  while i <= last do
    if deadline then check_deadline(deadline, who) end
    local t = now()
    local ok, msg, code, done, desc
    local L = lines[i]
    if i % 4 == 1 and i < last then
      desc = string.format("lines %d-%d in one write", i, i + 1)
      local L2 = lines[i + 1]
      ok, msg, code, done = c:write(L.body .. L.ending, L2.body .. L2.ending)
      i = i + 2
    elseif i % 4 == 2 then
      desc = string.format("line %d as body and ending", i)
      ok, msg, code, done = c:write(L.body, L.ending)
      i = i + 1
    else
      desc = string.format("line %d (%d bytes)", i, #L.body + #L.ending)
      ok, msg, code, done = c:write(L.body .. L.ending)
      i = i + 1
    end
    if not ok then
      failed(string.format("%s: write of %s", who, desc), t, msg, code,
             string.format(", %s bytes of it written", tostring(done)))
    end
  end
end

-- Read the echoes of lines[first..last] (echoed[n] is what the peer sends
-- back for line n), starting with method number k0.
local function read_echoes(c, it, echoed, first, last, who, k0, deadline)
  local i, k = first, k0
  while i <= last do
    if deadline then check_deadline(deadline, who) end
    k = k + 1
    local m = METHODS[(k - 1) % #METHODS + 1]
    if m == "pair" and i == last then m = "until" end
    local vals = read_with(c, it, m, who, i)
    local ms = m == "pair" and { "l", "L" } or { m }
    for j, v in ipairs(vals) do
      same(who, i + j - 1, ms[j], expect(ms[j], echoed[i + j - 1]), v)
    end
    i = i + #vals
  end
  return k
end

local function lines_total(lines)
  local n = 0
  for _, L in ipairs(lines) do n = n + #L.body + #L.ending end
  return n
end

local function part_b()
  local lines = make_lines()
  local deadline = now() + PARTLIMIT
  local t_start = now()
  local res = pack(duplex.run(function()
    local c, p, srv = pair()
    local echo = duplex.spawn(echo_side, p, lines, deadline)
    local writer = duplex.spawn(function()
      write_lines(c, lines, 1, #lines, "b: line writer", deadline)
      local ok, msg, code = c:shutdown("w")
      if not ok then failed("b: line writer, shutdown", now(), msg, code) end
      return true
    end)
    local reader = duplex.spawn(function()
      local it = c:lines()
      local echoed = echoes_of(lines)
      read_echoes(c, it, echoed, 1, #lines, "b: echo reader", 2, deadline)
      local t = now()
      local rest, msg, code = c:read("a")
      if rest ~= "" then
        failed("b: echo reader, read(\"a\") after the last echo (\"\" expected)", t,
               rest and ("got " .. show(rest)) or msg, code)
      end
      return true
    end)
    local w = pack(writer:join())
    local e = pack(echo:join())
    local rd = pack(reader:join())
    close_all(c, p, srv)
    return w, e, rd
  end))
  local took = now() - t_start
  local errs = {}
  for i = 1, 3 do
    if not res[i][1] then errs[#errs + 1] = tostring(res[i][2]) end
  end
  if #errs > 0 then error(table.concat(errs, "\n    "), 0) end
  return string.format("%d lines (%d bytes) each way intact in %.2fs", #lines, lines_total(lines), took)
end

-- The python3 echo peer for part c: prints its port, echoes one
-- connection until end of stream, with a timeout on every call.
local PY = [[
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
s.settimeout(TIMEOUT)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.settimeout(TIMEOUT)
n = 0
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
    n += len(d)
c.close()
print(n, flush=True)
]]

local function shquote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function part_c()
  local lines = make_lines()
  local py = PY:gsub("TIMEOUT", tostring(OPTIMEOUT * 3))
  -- the peer is not the code under test: keep it out of the shim
  local pipe = assert(io.popen("echo $$; exec env -u LD_PRELOAD python3 -c " .. shquote(py), "r"))
  local pid = tonumber(pipe:read("*l"))
  local port = tonumber(pipe:read("*l"))
  local c
  local t_start = now()
  local ok, err = pcall(function()
    if not port then error("c: the python3 echo peer did not start", 0) end
    local msg, code
    c, msg, code = duplex.connect("127.0.0.1", port, { timeout = OPTIMEOUT })
    if not c then failed("c: connect", t_start, msg, code) end
    c:settimeout(OPTIMEOUT)
    local deadline = now() + PARTLIMIT
    local it = c:lines()
    local echoed = {}
    for n, L in ipairs(lines) do echoed[n] = L.body .. L.ending end
    -- one write call's lines at a time, then their echoes
    local i, k = 1, 0
    while i <= #lines do
      local last = (i % 4 == 1 and i < #lines) and i + 1 or i
      write_lines(c, lines, i, last, "c: blocking writer", deadline)
      k = read_echoes(c, it, echoed, i, last, "c: blocking reader", k, deadline)
      i = last + 1
    end
    assert(c:shutdown("w"))
    local t = now()
    local rest
    rest, msg, code = c:read("a")
    if rest ~= "" then
      failed("c: read(\"a\") after the last echo (\"\" expected)", t,
             rest and ("got " .. show(rest)) or msg, code)
    end
  end)
  if c then c:close() end
  local took = now() - t_start
  if not ok and pid then os.execute("kill " .. pid .. " 2>/dev/null") end
  local echoed_n = pipe:read("*l")
  pipe:close()
  if not ok then error(err, 0) end
  local total = lines_total(lines)
  if tonumber(echoed_n) ~= total then
    error(string.format("c: the peer echoed %s bytes, expected %d", tostring(echoed_n), total), 0)
  end
  return string.format("%d lines (%d bytes) each way intact in %.2fs", #lines, total, took)
end

-- parts d and e: a stream both ways at once --------------------------------

-- Each side of x <-> y sends its data, half-closes and reads the other's
-- until end of stream, in tasks of its own; both must arrive intact.
-- Returns what each read.
local function both_ways(what, x, y, up, down, deadline)
  local function send(c, data)
    local r = rng(#data + 1)
    local pos = 1
    while pos <= #data do
      check_deadline(deadline, what .. ": writer")
      local l = math.min(({ 1, 100, 4096, 70000 })[r(4)], #data - pos + 1)
      local t = now()
      local ok, msg, code = c:write(data:sub(pos, pos + l - 1))
      if not ok then failed(string.format("%s: write at offset %d", what, pos - 1), t, msg, code) end
      pos = pos + l
    end
    assert(c:shutdown("w"))
  end
  local function drain(c)
    local parts = {}
    while true do
      check_deadline(deadline, what .. ": reader")
      local t = now()
      local s, msg, code = c:readsome()
      if s == nil then
        if msg ~= nil then failed(what .. ": readsome", t, msg, code) end
        return table.concat(parts)
      end
      parts[#parts + 1] = s
    end
  end
  local tasks = { duplex.spawn(send, x, up), duplex.spawn(send, y, down),
                  duplex.spawn(drain, y), duplex.spawn(drain, x) }
  local got = {}
  for i, t in ipairs(tasks) do
    local ok, v = t:join()
    if not ok then error(v, 0) end
    got[i] = v
  end
  for i, want in ipairs({ [3] = up, [4] = down }) do
    local d = first_diff(want, got[i])
    if d then
      error(string.format("%s: %s received %d bytes, sent %d; first difference at offset %d",
                          what, i == 3 and "up" or "down", #got[i], #want, d), 0)
    end
  end
end

-- part d: a proxy's two forwards (client:forward) between two pairs.
local function part_d()
  local up, down = make_data(math.floor(BYTES / 8)), make_data(math.floor(BYTES / 32)):reverse()
  local deadline = now() + PARTLIMIT
  local t_start = now()
  local counts = pack(duplex.run(function()
    local a, b, s1 = pair()                  -- a: the client; b: the proxy's side
    local c, d, s2 = pair()                  -- c: the proxy's side; d: the server
    local fwd = { duplex.spawn(function() return { b:forward(c) } end),
                  duplex.spawn(function() return { c:forward(b) } end) }
    local ok, err = pcall(both_ways, "d", a, d, up, down, deadline)
    local res = {}
    for i, t in ipairs(fwd) do
      local fine, r = t:join(OPTIMEOUT)
      res[i] = fine and r or { nil, tostring(r) }
    end
    close_all(a, b, c, d, s1, s2)
    if not ok then error(err, 0) end
    return res[1], res[2]
  end))
  local took = now() - t_start
  if counts[1][1] ~= #up or counts[2][1] ~= #down then
    error(string.format("d: the forwards returned %s and %s, expected %d and %d",
                        tostring(counts[1][1] or counts[1][2]), tostring(counts[2][1] or counts[2][2]),
                        #up, #down), 0)
  end
  return string.format("%d bytes up and %d down through two forwards, intact, in %.2fs",
                       #up, #down, took)
end

-- part e: TLS both ways (the records cross the socket a few bytes at a time).
local function part_e()
  local P = require("spec.tls_pki").get()
  local up, down = make_data(math.floor(BYTES / 8)), make_data(math.floor(BYTES / 32)):reverse()
  local deadline = now() + PARTLIMIT
  local t_start = now()
  duplex.run(function()
    local sctx = duplex.tls.context { certificate = P.server.crt, key = P.server.key }
    local cctx = duplex.tls.context { cafile = P.ca }
    local srv = assert(duplex.listen("127.0.0.1", 0, { tls = sctx }))
    local _, port = srv:getsockname()
    local t = now()
    local acc = duplex.spawn(function()      -- the server's handshake meanwhile
      local p, msg, code = srv:accept(OPTIMEOUT)
      if not p then failed("e: TLS accept", t, msg, code) end
      local ok
      ok, msg, code = p:handshake(OPTIMEOUT)
      if not ok then failed("e: the server's handshake", t, msg, code) end
      return p
    end)
    local c, msg, code = duplex.connect("127.0.0.1", port, { tls = cctx, timeout = OPTIMEOUT })
    if not c then failed("e: TLS connect (the client's handshake)", t, msg, code) end
    local ok, p = acc:join()
    if not ok then error(p, 0) end
    c:settimeout(OPTIMEOUT)
    p:settimeout(OPTIMEOUT)
    local fine, err = pcall(both_ways, "e", c, p, up, down, deadline)
    close_all(c, p, srv)
    if not fine then error(err, 0) end
  end)
  return string.format("%d bytes up and %d down over TLS, intact, in %.2fs", #up, #down, now() - t_start)
end

-- main ---------------------------------------------------------------------

say("duplex %s; LD_PRELOAD=%q; SHORTIO_SEED=%s SHORTIO_MAX=%s SHORTIO_EINTR=%s; bytes=%d; op timeout %gs",
    duplex._VERSION, PRELOAD, os.getenv("SHORTIO_SEED") or "(default)",
    os.getenv("SHORTIO_MAX") or "(default 7)", os.getenv("SHORTIO_EINTR") or "(default 8)",
    BYTES, OPTIMEOUT)

local results, failures = {}, 0
local function step(name, fn)
  local t = now()
  local ok, msg = pcall(fn)
  if ok then
    say("PASS %s: %s", name, msg)
  else
    failures = failures + 1
    say("FAIL %s (%.2fs):\n    %s", name, now() - t, tostring(msg))
  end
  results[#results + 1] = { name = name, ok = ok }
end

step("probe", probe)
if PARTS:find("a", 1, true) then step("a (bulk transfer in run)", part_a) end
if PARTS:find("b", 1, true) then step("b (line exchange in run)", part_b) end
if PARTS:find("c", 1, true) then step("c (line exchange, blocking, python3 peer)", part_c) end
if PARTS:find("d", 1, true) then step("d (a proxy's two forwards in run)", part_d) end
if PARTS:find("e", 1, true) and duplex.tls then step("e (TLS both ways in run)", part_e) end

say("%s: %d of %d passed", failures == 0 and "OK" or "FAILED", #results - failures, #results)
os.exit(failures == 0 and 0 or 1, true)   -- closing the state removes the TLS PKI (spec/tls_pki.lua)

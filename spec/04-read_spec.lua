-- Reading: every format of read, readuntil, readsome, lines, end of stream,
-- binary data, and half-close. Both ends live in this process, so each test
-- writes a small amount (it fits in the socket buffers) before reading.

local duplex = require "duplex"
local helpers = require "spec.helpers"

-- A connected pair closed when the test ends.
local function pair()
  local c, p, srv = helpers.pair()
  finally(function() helpers.close(c, p, srv) end)
  return c, p
end

-- Write data on c, half-close c, so p sees data then end of stream.
local function send_and_end(c, data)
  assert.equal(c, c:write(data))
  assert.equal(c, c:shutdown("w"))
end

describe("read", function()
  helpers.track_fds()

  describe("'l'", function()
    it("strips '\\n' and '\\r\\n' but keeps a lone '\\r'", function()
      local c, p = pair()
      send_and_end(c, "one\ntwo\r\nthree\rfour\r\nfive\r\r\n\n\r\n")
      assert.equal("one", p:read("l"))
      assert.equal("two", p:read("l"))
      assert.equal("three\rfour", p:read("l"))
      assert.equal("five\r", p:read("l"))   -- only the '\r' before '\n' goes
      assert.equal("", p:read("l"))
      assert.equal("", p:read("l"))
      assert.is_nil(p:read("l"))
    end)

    it("returns a final unterminated line at end of stream, then nil", function()
      local c, p = pair()
      send_and_end(c, "x\nlast")
      assert.equal("x", p:read("l"))
      assert.equal("last", p:read("l"))
      assert.is_nil(p:read("l"))
      assert.is_nil(p:read("l"))
    end)

    it("keeps a '\\r' that ends the stream", function()
      local c, p = pair()
      send_and_end(c, "ab\r")
      assert.equal("ab\r", p:read("l"))
      assert.is_nil(p:read("l"))
    end)

    it("does not take a '\\r' at the end of the buffer for a line end", function()
      local c, p = pair()
      assert(c:write("ab\r"))
      p:settimeout(0.05)
      local r, msg, code = p:read("l")
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.matches("read", msg, 1, true)
      assert(c:write("\ncd\n"))
      p:settimeout(5)
      assert.equal("ab", p:read("l"))
      assert.equal("cd", p:read("l"))
    end)

    it("fails with EMSGSIZE over maxline, keeping the data", function()
      local c, p = pair()
      assert.equal(1048576, p:getoption("maxline"))
      assert.equal(p, p:setoption("maxline", 8))
      assert.equal(8, p:getoption("maxline"))
      assert(c:write("0123456789abcdef"))
      local r, msg, code = p:read("l")
      assert.is_nil(r)
      assert.equal("EMSGSIZE", code)
      assert.is_string(msg)
      assert(c:write("\nnext\n"))
      p:setoption("maxline", 1024)
      assert.equal("0123456789abcdef", p:read("l"))
      assert.equal("next", p:read("l"))
    end)
  end)

  describe("'L'", function()
    it("keeps the line end as received", function()
      local c, p = pair()
      send_and_end(c, "one\ntwo\r\nthree\rfour\r\nfive\r\r\n\nlast")
      assert.equal("one\n", p:read("L"))
      assert.equal("two\r\n", p:read("L"))
      assert.equal("three\rfour\r\n", p:read("L"))
      assert.equal("five\r\r\n", p:read("L"))
      assert.equal("\n", p:read("L"))
      assert.equal("last", p:read("L"))
      assert.is_nil(p:read("L"))
    end)
  end)

  describe("'a'", function()
    it("returns the rest of the stream, then '' at end of stream", function()
      local c, p = pair()
      send_and_end(c, "hello\nworld")
      assert.equal("he", p:read(2))
      assert.equal("llo\nworld", p:read("a"))
      assert.equal("", p:read("a"))
      assert.equal("", p:read("a"))
      assert.is_nil(p:read("l"))
    end)

    it("returns '' on a stream that ends with no data", function()
      local c, p = pair()
      c:shutdown("w")
      assert.equal("", p:read("a"))
    end)

    it("waits for the end of stream, not just for the data at hand", function()
      local c, p = pair()
      assert(c:write("partial"))
      p:settimeout(0.05)
      local r, msg, code = p:read("a")
      assert.is_nil(r)
      assert.equal("ETIMEDOUT", code)
      assert.matches("read", msg, 1, true)
      send_and_end(c, " and the rest")
      p:settimeout(5)
      assert.equal("partial and the rest", p:read("a"))
    end)
  end)

  describe("a byte count", function()
    it("returns n bytes, fewer at end of stream, then nil", function()
      local c, p = pair()
      send_and_end(c, "abcde")
      assert.equal("abc", p:read(3))
      assert.equal("de", p:read(3))
      assert.is_nil(p:read(3))
    end)

    it("read(0) is '' with data buffered and does not consume it", function()
      local c, p = pair()
      send_and_end(c, "xy")
      assert.equal("x", p:read(1))
      assert.equal("", p:read(0))
      assert.equal("y", p:read(1))
      assert.is_nil(p:read(0))
    end)

    it("takes a count as a float with an integer value", function()
      local c, p = pair()
      send_and_end(c, "abcd")
      assert.equal("ab", p:read(2.0))
    end)
  end)

  it("accepts the '*l', '*L' and '*a' spellings", function()
    local c, p = pair()
    send_and_end(c, "a\r\nb\r\nrest")
    assert.equal("a", p:read("*l"))
    assert.equal("b\r\n", p:read("*L"))
    assert.equal("rest", p:read("*a"))
  end)

  it("reads several formats in one call", function()
    local c, p = pair()
    send_and_end(c, "line1\nline2\r\n12345rest")
    local a, b, n, rest = p:read("l", "L", 5, "a")
    assert.equal("line1", a)
    assert.equal("line2\r\n", b)
    assert.equal("12345", n)
    assert.equal("rest", rest)
  end)

  it("stops at the first format that meets end of stream, as io does", function()
    local c, p = pair()
    send_and_end(c, "only\n")
    local a, b = p:read("l", "l")
    assert.equal("only", a)
    assert.is_nil(b)
  end)

  it("returns a single nil at end of stream, with no message", function()
    local c, p = pair()
    send_and_end(c, "")
    for _, fmt in ipairs { "l", "L", 1, "*l" } do
      local n = select("#", p:read(fmt))
      assert.is_nil(p:read(fmt), tostring(fmt))
      assert.equal(1, n, "results for " .. tostring(fmt))
    end
  end)
end)

describe("readuntil", function()
  helpers.track_fds()

  it("returns the data before the delimiter and consumes the delimiter", function()
    local c, p = pair()
    send_and_end(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\nbody")
    assert.equal("GET / HTTP/1.1", p:readuntil("\r\n"))
    assert.equal("Host: x", p:readuntil("\r\n\r\n"))
    assert.equal("body", p:read("a"))
  end)

  it("returns '' when the delimiter comes first", function()
    local c, p = pair()
    send_and_end(c, "::a")
    assert.equal("", p:readuntil(":"))
    assert.equal("", p:readuntil(":"))
    assert.equal("a", p:read("a"))
  end)

  it("finds a multi-byte delimiter split across writes", function()
    local c, p = pair()
    local delim = "--boundary--"
    for k = 1, #delim - 1 do
      assert(c:write("part" .. k .. delim:sub(1, k)))
      p:settimeout(0.02)
      local r, _, code = p:readuntil(delim)
      assert.is_nil(r, "split at " .. k)
      assert.equal("ETIMEDOUT", code, "split at " .. k)
      assert(c:write(delim:sub(k + 1)))
      p:settimeout(5)
      assert.equal("part" .. k, p:readuntil(delim), "split at " .. k)
    end
  end)

  it("returns nil at end of stream and leaves the partial data", function()
    local c, p = pair()
    send_and_end(c, "partial")
    local n = select("#", p:readuntil("\n"))
    assert.equal(1, n)
    assert.is_nil(p:readuntil("\n"))
    assert.equal("partial", p:read("a"))
  end)

  it("fails with EMSGSIZE past max bytes without delimiter, keeping the data", function()
    local c, p = pair()
    assert(c:write("abcdefghij"))
    local r, msg, code = p:readuntil("\n", 4)
    assert.is_nil(r)
    assert.equal("EMSGSIZE", code)
    assert.is_string(msg)
    assert(c:write("\n"))
    assert.equal("abcdefghij", p:readuntil("\n"))
  end)

  it("allows exactly max bytes before the delimiter", function()
    local c, p = pair()
    send_and_end(c, "abcd\n")
    assert.equal("abcd", p:readuntil("\n", 4))
  end)

  it("uses maxline as the default max", function()
    local c, p = pair()
    p:setoption("maxline", 8)
    assert(c:write("0123456789"))
    local r, _, code = p:readuntil("\n")
    assert.is_nil(r)
    assert.equal("EMSGSIZE", code)
    assert.equal("0123456789", p:read(10))
  end)
end)

describe("readsome", function()
  helpers.track_fds()

  it("returns between 1 and max bytes of what has arrived", function()
    local c, p = pair()
    local data = "hello world"
    send_and_end(c, data)
    local got = {}
    for _ = 1, #data do
      local s = p:readsome(5)
      if s == nil then break end
      assert.is_true(#s >= 1 and #s <= 5, "got " .. #s .. " bytes")
      got[#got + 1] = s
    end
    assert.equal(data, table.concat(got))
    assert.is_nil(p:readsome(5))
  end)

  it("does not wait for max bytes", function()
    local c, p = pair()
    assert(c:write("abc"))
    p:settimeout(1)
    local elapsed, s = helpers.timed(function() return p:readsome(100) end)
    assert.is_string(s)
    assert.is_true(#s >= 1 and #s <= 3)
    assert.equal(("abc"):sub(1, #s), s)
    assert.is_true(elapsed < 0.5, "waited " .. elapsed)
  end)

  it("defaults max to 262144, taking more than 64 KiB at once when it is there", function()
    local c, p = pair()
    c:setoption("sndbuf", 1048576)
    p:setoption("rcvbuf", 1048576)
    local data = string.rep("x", 200000)
    -- 200000 bytes fit in these loopback buffers; read as they come
    assert(c:write(data))
    local total, calls, largest = 0, 0, 0
    while total < #data and calls < 1000 do
      local s = assert(p:readsome())
      assert.is_true(#s >= 1 and #s <= 262144)
      total, calls, largest = total + #s, calls + 1, math.max(largest, #s)
    end
    assert.equal(#data, total)
    assert.is_true(largest > 65536, "largest readsome: " .. largest)
  end)

  it("returns a single nil at end of stream", function()
    local c, p = pair()
    send_and_end(c, "")
    assert.equal(1, select("#", p:readsome()))
    assert.is_nil(p:readsome())
  end)
end)

describe("lines", function()
  helpers.track_fds()

  local function collect(it)
    local t = {}
    for line in it do
      t[#t + 1] = line
      if #t > 100 then error("runaway iterator") end
    end
    return t
  end

  it("iterates lines without their ends by default", function()
    local c, p = pair()
    send_and_end(c, "a\nb\r\n\nc")
    assert.same({ "a", "b", "", "c" }, collect(p:lines()))
  end)

  it("keeps the line ends with 'L'", function()
    local c, p = pair()
    send_and_end(c, "a\nb\r\n\nc")
    assert.same({ "a\n", "b\r\n", "\n", "c" }, collect(p:lines("L")))
  end)

  it("iterates byte counts", function()
    local c, p = pair()
    send_and_end(c, "abcde")
    assert.same({ "ab", "cd", "e" }, collect(p:lines(2)))
  end)

  it("raises on an I/O error instead of ending the loop, with the read's message and code", function()
    local c, p = pair()
    local _, port = c:getsockname()
    assert(c:write("first\n"))
    p:settimeout(0.05)
    local got = {}
    local ok, err = pcall(function()
      for line in p:lines() do
        got[#got + 1] = line
        if #got > 10 then break end
      end
    end)
    assert.is_false(ok)
    assert.same({ "first" }, got)
    local msg = ("read 127.0.0.1:%d: Connection timed out"):format(port)
    assert.same({ msg = msg, code = "ETIMEDOUT" }, { msg = err.msg, code = err.code, partial = err.partial })
    assert.matches("^spec/04%-read_spec%.lua:%d+: " .. msg:gsub("%.", "%%."):gsub("%-", "%%-") .. "$", tostring(err))
  end)

  it("raises ECONNRESET with the bytes of an unfinished line when the peer resets", function()
    local c, p = pair()
    local _, port = c:getsockname()
    assert(c:write("first\nunfinished"))
    local it = p:lines()
    assert.equal("first", it())             -- "unfinished" came with it
    assert.equal(c, c:setoption("linger", 0))
    c:close()                               -- a reset
    local ok, err = pcall(it)
    assert.is_false(ok)
    assert.same({ msg = ("read 127.0.0.1:%d: Connection reset by peer"):format(port), code = "ECONNRESET",
      partial = "unfinished" }, { msg = err.msg, code = err.code, partial = err.partial })
  end)
end)

describe("binary data", function()
  helpers.track_fds()

  it("passes NUL bytes through every format", function()
    local c, p = pair()
    send_and_end(c, "\0a\0\n" .. "\0\r\n" .. "b\0c" .. "x\0\0y" .. "z" .. "tail\0\0\0")
    assert.equal("\0a\0", p:read("l"))
    assert.equal("\0\r\n", p:read("L"))
    assert.equal("b\0c", p:read(3))
    assert.equal("x", p:readuntil("\0\0"))
    assert.equal("y", p:readsome(1))
    assert.equal("z", p:read(1))
    assert.equal("tail\0\0\0", p:read("a"))
  end)

  it("passes every byte value in both directions", function()
    local c, p = pair()
    local t = {}
    for i = 0, 255 do t[#t + 1] = string.char(i) end
    local all = table.concat(t)
    assert.equal(c, c:write(all, "\0", all))
    assert.equal(p, p:write(all))
    assert.equal(all .. "\0" .. all, p:read(#all * 2 + 1))
    assert.equal(all, c:read(#all))
  end)
end)

describe("write", function()
  helpers.track_fds()

  it("returns the client and sends strings and numbers in order", function()
    local c, p = pair()
    assert.equal(c, c:write("a", 1, " ", 2.5, "\n"))
    assert.equal(c, c:write())
    assert.equal(c, c:write(""))
    assert.equal("a1 2.5", p:read("l"))
  end)
end)

describe("shutdown", function()
  helpers.track_fds()

  it("'w' half-closes: the peer reads end of stream, the other way still works", function()
    local c, p = pair()
    assert.equal(c, c:write("request\n"))
    assert.equal(c, c:shutdown("w"))
    assert.equal("request", p:read("l"))
    assert.is_nil(p:read("l"))
    assert.equal("", p:read("a"))
    -- the other direction is still open
    assert.equal(p, p:write("response 1\n", "response 2\n"))
    assert.equal("response 1", c:read("l"))
    assert.equal(p, p:write("response 3\n"))
    assert.equal("response 2", c:read("l"))
    assert.equal(p, p:shutdown("w"))
    assert.equal("response 3\n", c:read("a"))
    assert.is_nil(c:read("l"))
  end)

  it("'w' makes a later write fail with EPIPE and 0 bytes written", function()
    local c, p = pair()
    c:shutdown("w")
    local r, msg, code, n = c:write("late")
    assert.is_nil(r)
    assert.equal("EPIPE", code)
    assert.is_string(msg)
    assert.equal(0, n)
    assert.is_nil(p:read("l"))
  end)

  it("defaults to 'rw': the peer reads end of stream", function()
    local c, p = pair()
    assert(c:write("bye"))
    assert.equal(c, c:shutdown())
    assert.equal("bye", p:read("a"))
  end)

  it("'r' still lets the client write", function()
    local c, p = pair()
    assert.equal(c, c:shutdown("r"))
    assert.equal(c, c:write("after shutdown r\n"))
    assert.equal("after shutdown r", p:read("l"))
  end)
end)

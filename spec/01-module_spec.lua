-- The module table, duplex.type, metatable names and __tostring.

local duplex = require "duplex"
local helpers = require "spec.helpers"

describe("duplex module", function()
  helpers.track_fds()

  it("loads with require and is a table of functions", function()
    assert.is_table(duplex)
    for _, name in ipairs { "listen", "connect", "run", "spawn", "sleep",
                            "now", "resolve", "type", "onerror" } do
      assert.is_function(duplex[name], name)
    end
  end)

  it("returns the same table on a second require", function()
    assert.equal(duplex, require "duplex")
  end)

  it("has _VERSION \"duplex \" .. LX_VERSION, the version written once in csrc/lduplex.h", function()
    local f = assert(io.open("csrc/lduplex.h"))
    local version = f:read("*a"):match('\n#define LX_VERSION "(%d+%.%d+%.%d+)"\n')
    f:close()
    assert.is_string(version, "csrc/lduplex.h defines no LX_VERSION X.Y.Z")
    assert.equal("duplex " .. version, duplex._VERSION)
  end)

  it("now() is a float clock that never goes back", function()
    local a = duplex.now()
    local b = duplex.now()
    assert.equal("float", helpers.mathtype(a))
    assert.is_true(b >= a)
  end)
end)

describe("duplex.type", function()
  helpers.track_fds()

  it("returns nil for every value that is not a duplex object", function()
    local fake = setmetatable({}, { __name = "duplex.client" })
    local values = {
      { "nil", nil }, { "boolean", true }, { "integer", 1 }, { "float", 1.5 },
      { "string", "client" }, { "table", {} }, { "function", print },
      { "coroutine", coroutine.create(function() end) }, { "file", io.stdout },
      { "table named like a client", fake },
    }
    for _, row in ipairs(values) do
      local n = select("#", duplex.type(row[2]))
      assert.is_nil(duplex.type(row[2]), row[1])
      assert.equal(1, n, row[1] .. ": one result")
    end
  end)

  it("tells open and closed servers and clients apart", function()
    local c, p, srv = helpers.pair()
    assert.equal("server", duplex.type(srv))
    assert.equal("client", duplex.type(c))
    assert.equal("client", duplex.type(p))
    assert.is_true(c:close())
    assert.is_true(p:close())
    assert.is_true(srv:close())
    assert.equal("closed server", duplex.type(srv))
    assert.equal("closed client", duplex.type(c))
    assert.equal("closed client", duplex.type(p))
  end)

  it("reports a unix-domain server and client the same way", function()
    local path = helpers.tmpname()
    finally(function() os.remove(path) end)
    local srv = assert(duplex.listen("unix:" .. path))
    local c = assert(duplex.connect("unix:" .. path, nil, { timeout = 5 }))
    local p = assert(srv:accept(5))
    assert.equal("server", duplex.type(srv))
    assert.equal("client", duplex.type(c))
    assert.equal("client", duplex.type(p))
    helpers.close(c, p, srv)
    assert.equal("closed server", duplex.type(srv))
    assert.equal("closed client", duplex.type(c))
  end)
end)

describe("metatables", function()
  helpers.track_fds()

  it("are named duplex.server and duplex.client", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    assert.equal("duplex.server", debug.getmetatable(srv).__name)
    assert.equal("duplex.client", debug.getmetatable(c).__name)
    assert.equal("duplex.client", debug.getmetatable(p).__name)
    -- connect and accept make the same kind of object
    assert.equal(debug.getmetatable(c), debug.getmetatable(p))
    assert.are_not.equal(debug.getmetatable(c), debug.getmetatable(srv))
  end)

  it("have __close (Lua 5.4) and __gc", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    for _, o in ipairs { srv, c } do
      local mt = debug.getmetatable(o)
      if helpers.lua54 then assert.is_not_nil(mt.__close, mt.__name) end
      assert.is_not_nil(mt.__gc, mt.__name)
      assert.is_not_nil(mt.__tostring, mt.__name)
    end
  end)

  it("close() is idempotent and returns true", function()
    local c, p, srv = helpers.pair()
    for _, o in ipairs { c, p, srv } do
      assert.is_true(o:close())
      assert.is_true(o:close())
    end
  end)

  local close_vars = helpers.load54([[
    local c2, p2, s2
    do
      c2, p2, s2 = ...
      local c <close> = c2
      local p <close> = p2
      local srv <close> = s2
    end
    return c2, p2, s2
  ]], "close_vars")
  it("<close> variables close the socket", function()
    if not close_vars then pending("Lua 5.4 only: <close>") end
    local c2, p2, s2 = close_vars(helpers.pair())
    assert.equal("closed client", duplex.type(c2))
    assert.equal("closed client", duplex.type(p2))
    assert.equal("closed server", duplex.type(s2))
  end)

  it("an unreachable open socket is closed by the collector", function()
    local before = helpers.fdcount()
    local function make()  -- in its own frame so no register keeps them
      local c, p, srv = helpers.pair()
      return helpers.fdcount() - before, duplex.type(c), duplex.type(p), duplex.type(srv)
    end
    local opened = make()
    assert.equal(3, opened)
    assert.equal(before, helpers.fdcount())
  end)
end)

describe("__tostring", function()
  helpers.track_fds()

  it("shows local -> remote address of an open client", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    local chost, cport = c:getsockname()
    local phost, pport = p:getsockname()
    assert.equal(string.format("duplex.client (%s:%d -> %s:%d)",
      chost, cport, phost, pport), tostring(c))
    assert.equal(string.format("duplex.client (%s:%d -> %s:%d)",
      phost, pport, chost, cport), tostring(p))
  end)

  it("shows the address of an open server", function()
    local srv, port = helpers.server()
    finally(function() srv:close() end)
    assert.equal(string.format("duplex.server (127.0.0.1:%d)", port), tostring(srv))
  end)

  it("shows (closed) for closed objects", function()
    local c, p, srv = helpers.pair()
    helpers.close(c, p, srv)
    assert.equal("duplex.client (closed)", tostring(c))
    assert.equal("duplex.client (closed)", tostring(p))
    assert.equal("duplex.server (closed)", tostring(srv))
  end)
end)

-- README's "A script of your own, anywhere" block, run from /tmp with the
-- checkout in place of ~/duplex.
describe("the module built by make, from a script outside the checkout", function()
  it("is found through the paths README gives", function()
    if not helpers.lua54 then pending("README's block runs lua5.4 and its build") end
    local f = assert(io.open("README.md"))
    local text = f:read("*a")
    f:close()
    local block = assert(text:match("A script of your own.-```sh\n(.-)```"), "README has no such block")
    local p = assert(io.popen("pwd"))
    local here = p:read("*l")
    p:close()
    local script = os.tmpname()
    local out = os.tmpname()
    finally(function() os.remove(script); os.remove(out) end)
    local h = assert(io.open(script, "w"))
    h:write('local duplex = require "duplex"\nprint(duplex._VERSION, duplex.type(assert(duplex.listen("127.0.0.1", 0))))\n')
    h:close()
    block = block:gsub("%$HOME/duplex", here):gsub("myserver%.lua", script)
    local ok = helpers.execute(("cd /tmp && env -u LUA_PATH -u LUA_CPATH sh -c %s > %s 2>&1")
      :format(helpers.shquote(block), out))
    local o = assert(io.open(out))
    local got = o:read("*a")
    o:close()
    assert.is_true(ok, got)
    assert.equal(require("duplex")._VERSION .. "\tserver\n", got)
  end)
end)

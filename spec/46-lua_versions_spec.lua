-- spec/46-lua_versions_spec.lua: what differs between the interpreters
-- duplex builds for (issue 18), asserted on each: argument errors name the
-- caller's call on every version (5.1 and LuaJIT reach the C functions
-- through Lua wrappers); integer arguments need integer values even where
-- every number is a float; a task's held value ends when the task is
-- cancelled (core.hold, what stands in for <close> before 5.4); and a wait
-- inside pcall, a metamethod or a for-in iterator works, except on PUC 5.1,
-- where it fails with an error that says why and leaves the task able to
-- wait afterwards.

local duplex = require "duplex"
local core = require "duplex.core"
local helpers = require "spec.helpers"

local puc51 = _VERSION == "Lua 5.1" and rawget(_G, "jit") == nil
local here = debug.getinfo(1, "S").short_src

-- The message of an argument error raised on `line` of this file.
local function bad_arg(line, n, fname, why)
  return ("%s:%d: bad argument #%d to '%s' (%s)"):format(here, line, n, fname, why)
end

local CANNOT_WAIT = "duplex: a task cannot wait here: Lua 5.1 cannot yield across pcall, " ..
  "a metamethod or a for-in iterator (LuaJIT and Lua 5.2 on can): wait outside them, " ..
  "and take failures from the nil, msg, code results instead of pcall"

-- Does s end with the refusal of a wait on PUC 5.1 (after its position)?
local function refused(s)
  return type(s) == "string" and s:sub(-#CANNOT_WAIT) == CANNOT_WAIT
end

local function line_here()
  return debug.getinfo(2, "l").currentline
end

describe("on " .. (rawget(_G, "jit") and jit.version or _VERSION), function()
  it("argument errors name the caller's line and count a method's arguments from self", function()
    local c, p, srv = helpers.pair()
    local ok, err, line
    line = line_here(); ok, err = pcall(function() local r = c:read(1.5); return r end)
    assert.same({ false, bad_arg(line, 1, "read", "byte count must be an integer") }, { ok, err })
    line = line_here(); ok, err = pcall(function() local r = c:write(true); return r end)
    assert.same({ false, bad_arg(line, 1, "write", "string expected, got boolean") }, { ok, err })
    line = line_here(); ok, err = pcall(function() local r = srv:accept("x"); return r end)
    assert.same({ false, bad_arg(line, 1, "accept", "number expected, got string") }, { ok, err })
    line = line_here(); ok, err = pcall(function() local r = duplex.connect(); return r end)
    assert.same({ false, bad_arg(line, 1, "connect", "string expected, got nil") }, { ok, err })
    helpers.close(c, p, srv)
  end)

  it("argument errors of a waiting method inside a task name the caller too", function()
    local c, p, srv = helpers.pair()
    local got, line
    duplex.run(function()
      line = line_here(); got = { pcall(function() local r = p:read(-1); return r end) }
    end)
    assert.same({ false, bad_arg(line, 1, "read", "byte count must be non-negative") }, got)
    helpers.close(c, p, srv)
  end)

  it("an integer argument takes a float with an integer value, and no other", function()
    local c, p, srv = helpers.pair()
    assert(c:write("abcdef"))
    assert.same({ "ab" }, { p:read(2.0) })
    assert.same({ "cdef" }, { p:read(4) })
    local ok, err = pcall(p.read, p, 0.5)
    assert.is_false(ok)
    assert.matches("byte count must be an integer", err, 1, true)
    helpers.close(c, p, srv)
  end)

  it("a cancelled task's held value is ended by its __cancel, once; a task that ends keeps it", function()
    local ended = {}
    local Held = { __cancel = function(h) ended[#ended + 1] = h.name end }
    duplex.run(function()
      local sleeper = duplex.spawn(function()
        core.hold(setmetatable({ name = "sleeper" }, Held))
        duplex.sleep(60)
      end)
      local cleared = duplex.spawn(function()
        core.hold(setmetatable({ name = "cleared" }, Held))
        core.hold(nil)
        duplex.sleep(60)
      end)
      local finisher = duplex.spawn(function()
        core.hold(setmetatable({ name = "finisher" }, Held))
        return "done"
      end)
      helpers.until_waiting(sleeper, "timer")
      helpers.until_waiting(cleared, "timer")
      assert.same({ true, "done" }, { finisher:join() })
      sleeper:cancel()
      cleared:cancel()
      sleeper:cancel()
    end)
    assert.same({ "sleeper" }, ended)
    core.hold(setmetatable({ name = "outside" }, Held))    -- outside a task: nothing
    assert.same({ "sleeper" }, ended)
  end)

  it("a task waits inside pcall (PUC 5.1: refused with the reason, and waits after)", function()
    local c, p, srv = helpers.pair()
    local inside, after
    duplex.run(function()
      local reader = duplex.spawn(function()
        inside = { pcall(function() local r = p:read(1); return r end) }
        after = { p:read(1) }
      end)
      helpers.until_waiting(reader, "read", p)     -- 5.1: refused, now in the read after
      assert(c:write("x"))
      if not puc51 then helpers.until_waiting(reader, "read", p) end
      assert(c:write("y"))
      reader:join()
    end)
    if puc51 then
      assert.same({ false, true }, { inside[1], refused(inside[2]) })
      assert.same({ "x" }, after)
    else
      assert.same({ true, "x" }, inside)
      assert.same({ "y" }, after)
    end
    helpers.close(c, p, srv)
  end)

  it("a task waits inside a metamethod and a for-in iterator (PUC 5.1: refused)", function()
    local c, p, srv = helpers.pair()
    local meta, lines
    duplex.run(function()
      local reader = duplex.spawn(function()
        local lazy = setmetatable({}, { __index = function(_, k) return p:read(k) end })
        meta = { pcall(function() local v = lazy[3]; return v end) }
        lines = {}
        local ok, err = pcall(function()
          for line in p:lines() do lines[#lines + 1] = line end
        end)
        lines.ok, lines.err = ok, err
      end)
      if puc51 then
        reader:join()            -- nothing to read yet: both waits refused at once
      else
        helpers.until_waiting(reader, "read", p)
        assert(c:write("abc"))
        helpers.until_waiting(reader, "read", p)
        assert(c:write("one\ntwo\n"))
        c:close()
        reader:join()
      end
    end)
    if puc51 then
      assert.same({ false, true }, { meta[1], refused(meta[2]) })
      assert.same({ false, true }, { lines.ok, refused(lines.err) })
    else
      assert.same({ true, "abc" }, meta)
      assert.same({ "one", "two", ok = true }, lines)
    end
    helpers.close(p, srv)
  end)
  it("duplex.pcall: a task waits inside it on every version; errors and nesting as pcall", function()
    local c, p, srv = helpers.pair()
    local got = {}
    duplex.run(function()
      local reader = duplex.spawn(function()
        got.read = { duplex.pcall(function(n) return p:read(n), "more" end, 1) }
        got.err = { duplex.pcall(function() p:read(1); error({ code = 7 }) end) }
        got.nested = { duplex.pcall(duplex.pcall, function() return p:read(2) end) }
        got.after = { p:read(1) }
      end)
      for _, piece in ipairs { "a", "b", "cd", "e" } do
        helpers.until_waiting(reader, "read", p)
        assert(c:write(piece))
      end
      reader:join()
    end)
    assert.same({ true, "a", "more" }, got.read)
    assert.same({ false, { code = 7 } }, got.err)
    assert.same({ true, true, "cd" }, got.nested)
    assert.same({ "e" }, got.after)
    assert.same({ false, "outside" }, { duplex.pcall(error, "outside", 0) })
    helpers.close(c, p, srv)
  end)
  it("core.resume_as refuses what is not another coroutine, and a caller that is not a task", function()
    local co = coroutine.create(function() end)
    local ok, e = pcall(core.resume_as, "x")
    assert.same({ false, true }, { ok, e:find("another coroutine expected", 1, true) ~= nil })
    local line = line_here(); ok, e = pcall(function() local r = core.resume_as(co); return r end)
    assert.same({ false, ("%s:%d: duplex: only a task's own coroutine can lend it"):format(here, line) },
      { ok, e })
    duplex.run(function()
      ok, e = pcall(core.resume_as, coroutine.running())
      assert.same({ false, true }, { ok, e:find("another coroutine expected", 1, true) ~= nil })
    end)
    assert.equal("suspended", coroutine.status(co))   -- never resumed
  end)
end)

-- Symptom: with the end of stream seen and bytes still buffered, a 0 count
-- that came last in a multi-format read gave nil instead of "":
-- read("l", 0) on "a\nb" answered "a", nil. Found by spec/fuzz.
-- Cause: a multi-format read cuts its values from one copy of the consumed
-- bytes, scanning the formats again there with the end-of-stream flag; in
-- the copy nothing is left after the consumed bytes, so the 0 count met the
-- end although the buffer still held "b".
-- Fix: the second scan counts the end only when no byte is left after the
-- consumed ones (lread.c scan_formats).
local duplex = require "duplex"
local helpers = require "spec.helpers"

describe("regression 016: a trailing 0 count in a multi-format read", function()
  helpers.track_fds()

  it("is \"\" while bytes remain after the end of stream, nil once none do", function()
    local c, p, srv = helpers.pair()
    finally(function() helpers.close(c, p, srv) end)
    assert(c:write("a\nb"))
    c:shutdown("w")
    assert.same({ nil }, { p:readuntil("Z") })     -- the end is now known, "a\nb" stays
    assert.same({ "a", "" }, { p:read("l", 0) })
    assert.same({ "", "" }, { p:read(0, 0) })
    assert.same({ "b", nil }, { p:read(1, 0) })
  end)
end)

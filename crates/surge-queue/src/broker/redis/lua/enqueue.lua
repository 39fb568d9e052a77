-- Stores the submissions ARGV[2..] (10 fields each), in order. Returns, per
-- submission, the id that holds it and 1 if it was created.
local out = {}
for i = 2, #ARGV, 10 do
  local id, created = enqueue(ARGV, i)
  out[#out + 1] = id
  out[#out + 1] = created
end
done()
return out

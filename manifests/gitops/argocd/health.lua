-- Argo CD health of a slurm-maint.io MaintenancePolicy, from its status conditions.
local hs = {}
local function condition(t)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == t then
        return c
      end
    end
  end
  return nil
end
local function describe(c)
  local msg = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    msg = msg .. ": " .. c.message
  end
  return msg
end
if obj.status == nil or obj.status.observedGeneration == nil
    or (obj.metadata.generation ~= nil and obj.status.observedGeneration < obj.metadata.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the slurm-maint controller to observe this generation"
  return hs
end
local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end
local ready = condition("Ready")
-- Ready=False, or nodes that failed and are kept drained (reason NodesFailed): a person
-- has to look (delete the Failed NodeMaintenance to retry).
if ready ~= nil and (ready.status == "False" or ready.reason == "NodesFailed") then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
local paused = condition("Paused")
if paused ~= nil and paused.status == "True" and paused.reason == "PausedBySpec" then
  hs.status = "Suspended"
  hs.message = describe(paused)
  return hs
end
-- Monitor-only and dry-run policies act on nothing: their campaign never "progresses".
if paused ~= nil and (paused.reason == "MonitorOnly" or paused.reason == "DryRun") then
  hs.status = "Healthy"
  hs.message = describe(paused)
  return hs
end
local progressing = condition("Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  if progressing ~= nil then
    hs.message = describe(progressing)
  else
    hs.message = describe(ready)
  end
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the policy's conditions"
return hs

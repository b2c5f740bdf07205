-- Argo CD health check for the vpc.hwcloud.dev kinds (TrafficMirrorSession, TrafficMirrorFilter,
-- ProviderConfig). One script for all three: deploy/argocd/sync.sh copies it into the per-kind
-- files and argocd-cm-patch.yaml. Tested with gopher-lua in tests/argocd-health.
--
-- Rules, first match wins (reasons: src/controller/conditions.rs):
--  1. no status, or status.observedGeneration missing or < metadata.generation: Progressing
--  2. no Ready condition, or its observedGeneration < metadata.generation: Progressing
--  3. Ready=False with a terminal reason (NameConflict, AlreadyManaged, Drifted, SessionNotFound,
--     FilterNotFound, SessionIdRequired, SecretInvalid, ProviderConfigNotAllowed): Degraded
--  4. Synced=False with a reason that is not a wait (a cloud error code, Timeout, ConnectionFailed,
--     KubernetesError, a terminal reason, any reason unknown to this script): Degraded
--  5. Ready=True: Healthy
--  6. anything else (Ready=False with a wait reason: Creating, Updating, Deleting, FilterNotReady,
--     ProviderConfigNotReady, InUse; or an unknown reason while Synced is not False): Progressing
-- The message is "<reason>: <condition message>".
local hs = {}

local waits = {
  Creating = true, Updating = true, Deleting = true, FilterNotReady = true,
  ProviderConfigNotReady = true, InUse = true,
}
local terminal = {
  NameConflict = true, AlreadyManaged = true, Drifted = true, SessionNotFound = true,
  FilterNotFound = true, SessionIdRequired = true, SecretInvalid = true,
  ProviderConfigNotAllowed = true,
}

local function condition(status, type)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  local reason = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    return reason .. ": " .. c.message
  end
  return reason
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "waiting for the operator to observe generation " .. string.format("%d", generation)
  else
    hs.message = "waiting for the operator"
  end
  return hs
end

local ready = condition(status, "Ready")
local synced = condition(status, "Synced")

if ready == nil or (generation ~= nil and ready.observedGeneration ~= nil
    and ready.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report Ready for generation "
    .. string.format("%d", generation or status.observedGeneration)
  return hs
end

if ready.status == "False" and terminal[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

if synced ~= nil and synced.status == "False" and not waits[synced.reason] then
  hs.status = "Degraded"
  hs.message = describe(synced)
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs

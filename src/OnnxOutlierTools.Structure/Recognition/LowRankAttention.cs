using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Structure.Rules;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Multi-head latent attention: an attention unit whose query projection reads a norm of another linear's output
/// (q_a -> q_a_layernorm -> q_b) and whose key/value projection reads a norm of a slice of another linear's output
/// (kv_a_proj_with_mqa -> Split -> kv_a_layernorm -> kv_b). The down-projections become <see cref="LowRankRole"/>, so
/// the block's input norm is the one in front of them.</summary>
internal static class LowRankAttention
{
    public static List<AttentionRole> Attach(List<AttentionRole> attentions, LinearIndex linears, List<NormRole> norms, RecognitionTrace trace)
    {
        var byOutput = new Dictionary<Value, NormRole>();
        foreach (var n in norms) byOutput.TryAdd(n.Output, n);
        (LinearRole? Down, NormRole? Norm) Behind(LinearRole? up)
        {
            if (up is null || !byOutput.TryGetValue(GraphWalk.Upstream(up.Input), out var norm) || norm.Input.Value is not { } normed) return (null, null);
            var v = FfnRules.PackedPart(normed) ?? GraphWalk.Upstream(normed);
            return (linears.ByOutput(v), norm);
        }
        var result = new List<AttentionRole>(attentions.Count);
        foreach (var a in attentions)
        {
            var (qDown, qNorm) = Behind(a.Query);
            var (kvDown, kvNorm) = Behind(a.Key);
            if (qDown is not null && kvDown is not null && GraphWalk.SameTensor(qDown.Input, kvDown.Input))
            {
                trace.Count("Attention/LowRank", true);
                result.Add(a with { LowRank = new LowRankRole(qDown, qNorm, kvDown, kvNorm) });
            }
            else result.Add(a);
        }
        return result;
    }
}

using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Recognition;

/// <summary>Finds T5's relative position bias behind an attention's additive mask: a Gather from a 2-D initializer whose
/// second dimension is the head count, indexed by computed (not input) buckets, upstream of the bias added to the scores;
/// or com.microsoft RelativePositionBias reading such a table.</summary>
internal static class RelativePositionBias
{
    public static RelativePositionBiasRole? Find(AttentionRole role)
    {
        if (role.NumHeads is not int heads || heads <= 0) return null;
        foreach (var input in role.MaskRole.Inputs.Where(i => i.Kind == MaskKind.AdditiveBias))
        {
            var seen = new HashSet<Value>();
            var queue = new Queue<(Value Value, int Depth)>();
            queue.Enqueue((input.Value, 0));
            while (queue.Count > 0)
            {
                var (v, depth) = queue.Dequeue();
                if (!seen.Add(v) || depth > 12 || v.Producer is not { } p) continue;
                // ORT's fused form (T5 optimized by onnxruntime.transformers): RelativePositionBias(bias_table, query_length, key_length).
                if (p.Is("RelativePositionBias", "com.microsoft") && p.Input(0) is { IsInitializer: true } fusedTable && fusedTable.Shape is { Count: 2 } fs
                    && fs[0].Value is long fb && fs[1].Value == heads)
                    return new RelativePositionBiasRole(fusedTable, p, input.Value, fb, heads);
                if (p.Is("Gather") && p.GetInt("axis", 0) == 0 && p.Input(0) is { IsInitializer: true } table && table.Shape is { Count: 2 } shape
                    && shape[1].Value == heads && shape[0].Value is long buckets && p.Input(1) is { } idx && !idx.IsGraphInput && !idx.IsInitializer)
                    return new RelativePositionBiasRole(table, p, input.Value, buckets, heads);
                foreach (var i in p.Inputs) if (i is not null && !i.IsInitializer) queue.Enqueue((i, depth + 1));
            }
        }
        return null;
    }
}

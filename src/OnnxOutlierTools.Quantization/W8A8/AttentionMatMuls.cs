using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Quantization.W8A8;

/// <summary>The two activation-by-activation matmuls of each decomposed attention: the scores Q K^T (a MatMul of the core
/// whose output reaches the Softmax) and the values P V (the MatMul reading the probabilities). Fused attention ops
/// (GroupQueryAttention, MultiHeadAttention, Attention) compute them inside their kernel and are listed as not found.</summary>
public static class AttentionMatMuls
{
    public static (IReadOnlyList<AttentionMatMul> Found, IReadOnlyList<string> NotFound) Find(ModelStructure structure)
    {
        var found = new List<AttentionMatMul>();
        var notFound = new List<string>();
        foreach (var block in structure.Blocks)
        {
            if (block.Attention is not { } attention) continue;
            if (attention.Probabilities is not { } probabilities)
            {
                notFound.Add($"block {block.Index}: {attention.Form} attention is one fused op (its matmuls run inside the kernel)");
                continue;
            }
            var core = attention.CoreNodes.ToHashSet();
            var values = ValuesMatMul(probabilities);
            var softmax = probabilities.Producer;
            var scores = softmax is null ? null : core.Where(n => n.OpType == "MatMul" && n != values && !n.Inputs.Any(i => i is { IsInitializer: true }))
                .FirstOrDefault(n => Reaches(n, softmax, core));
            if (scores is null || values is null)
            {
                notFound.Add($"block {block.Index}: the decomposed attention's {(scores is null ? "Q K^T" : "P V")} MatMul was not found");
                continue;
            }
            found.Add(new AttentionMatMul($"block{block.Index}.attention-scores", block.Index, "attention-scores", scores, ProbabilityInput: false));
            found.Add(new AttentionMatMul($"block{block.Index}.attention-values", block.Index, "attention-values", values, ProbabilityInput: true));
        }
        return (found, notFound);
    }

    /// <summary>The MatMul reading the probabilities as its first input, directly or through the dtype Casts and Identity
    /// nodes exporters put after the Softmax (HF's <c>softmax(..., dtype=float32).to(dtype)</c>).</summary>
    private static Node? ValuesMatMul(Value probabilities)
    {
        var current = probabilities;
        for (int depth = 0; depth < 4; depth++)
        {
            var consumers = current.Consumers.ToArray();
            if (consumers.FirstOrDefault(n => n.OpType == "MatMul" && ReferenceEquals(n.Input(0), current)) is { } matmul) return matmul;
            if (consumers.Length != 1 || consumers[0].OpType is not ("Cast" or "Identity") || consumers[0].Outputs[0] is not { } next) return null;
            current = next;
        }
        return null;
    }

    /// <summary>Whether <paramref name="target"/> is reached from <paramref name="from"/>'s outputs inside the attention core.</summary>
    private static bool Reaches(Node from, Node target, HashSet<Node> core)
    {
        var seen = new HashSet<Node>();
        var stack = new Stack<Node>([from]);
        while (stack.Count > 0)
        {
            var node = stack.Pop();
            if (node == target) return true;
            if (!seen.Add(node)) continue;
            foreach (var output in node.Outputs.OfType<Value>())
                foreach (var consumer in output.Consumers)
                    if (core.Contains(consumer) || consumer == target) stack.Push(consumer);
        }
        return false;
    }
}

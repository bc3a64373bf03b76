using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Roles;

namespace OnnxOutlierTools.Structure.Rules;

/// <summary>A sequence-classification head: a linear after the last block with few outputs (fewer than the
/// vocabulary, at most <see cref="MaxClasses"/>) whose path to a graph output pools the sequence, before the head
/// (BERT's [CLS] Gather, a mean over tokens) or after it (HF *ForSequenceClassification gathers the last
/// non-padding token's logits). An LM head maps every token to the vocabulary and pools nothing.</summary>
public static class ClassifierHeads
{
    public const long MaxClasses = 1024;

    private static readonly HashSet<string> Pooling = ["Gather", "GatherND", "GatherElements", "Slice", "ReduceMean", "ReduceMax", "ReduceSum"];
    private static readonly HashSet<string> Passing = ["Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Add", "Tanh", "Softmax", "Sigmoid", "Relu", "Gelu", "Erf", "Mul", "Div"];

    public static LinearRole? Find(IEnumerable<LinearRole> candidates, EmbeddingRole? embedding)
    {
        long vocab = embedding?.TokenTable.ConstValue?.Dims is [var rows, _] ? rows : long.MaxValue;
        // The last such linear that reaches a graph output (a pooler dense or pre_classifier before it does not).
        LinearRole? found = null;
        foreach (var l in candidates)
        {
            if (l.OutFeatures > MaxClasses || l.OutFeatures >= vocab) continue;
            if (Reaches(l.Output, out bool pooledAfter) && (pooledAfter || PoolsBefore(l.Input))) found = l;
        }
        return found;
    }

    /// <summary>A pooling op within a few nodes upstream of the head input (through a pooler dense/tanh, layout ops).</summary>
    private static bool PoolsBefore(Value input)
    {
        var v = input;
        for (int i = 0; i < 6 && v.Producer is { IsDefaultDomain: true } p; i++)
        {
            if (Pooling.Contains(p.OpType)) return !p.Is("Gather") || IsSingleIndex(p);
            if (!Passing.Contains(p.OpType) && !p.Is("MatMul") && !p.Is("Gemm") || p.Input(0) is not { } next) return false;
            v = next;
        }
        return false;
    }

    /// <summary>The head output reaches a graph output (through passing and pooling ops); whether it is pooled on the way.</summary>
    private static bool Reaches(Value output, out bool pooled)
    {
        var v = output;
        pooled = false;
        for (int i = 0; i < 6; i++)
        {
            if (v.IsGraphOutput) return true;
            var next = v.Uses.Select(u => u.Node).FirstOrDefault(n => n is { IsDefaultDomain: true } && (Pooling.Contains(n.OpType) || Passing.Contains(n.OpType)));
            if (next?.Output(0) is not { } o) return false;
            pooled |= Pooling.Contains(next.OpType);
            v = o;
        }
        return false;
    }

    /// <summary>A Gather that picks one position (a scalar or one-element index), not an embedding lookup.</summary>
    private static bool IsSingleIndex(Node gather) => gather.GetInt("axis", 0) != 0 || gather.Input(1)?.Shape is { Count: 0 } or [{ Value: 1 }];
}

using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Patterns;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Quantization.Int4;

/// <summary>One linear the int4 quantizer looked at: its role (<c>block3.attention.q</c>, <c>lm-head</c>), the linear, and
/// why it is left in float (null when it is quantized).</summary>
public sealed record Int4Candidate(string Role, LinearRole Linear, string? SkipReason)
{
    public bool Eligible => SkipReason is null;
}

/// <summary>Selects the linears to quantize from the recognized structure: every block's attention projections (q, k, v or the
/// packed qkv, o, an output gate, multi-head latent attention's down-projections, a cross-attention's), FFN projections
/// (gate, up, down; a packed gate_up once), the linears of opaque token mixers and FFNs; the LM head only when asked. The
/// embedding table is never quantized (a Gather, not a linear). Each must be a MatMul or Gemm (transA = 0) whose weight is a
/// 2-D FLOAT/FLOAT16/BFLOAT16 constant, not a slice of a stack picked at run time, not already quantized.</summary>
public static class Int4Linears
{
    public static IReadOnlyList<Int4Candidate> Select(ModelStructure structure, bool includeLmHead)
    {
        ArgumentNullException.ThrowIfNull(structure);
        var seen = new HashSet<Node>();
        var result = new List<Int4Candidate>();
        void Add(string role, LinearRole? linear)
        {
            if (linear is null || !seen.Add(linear.Node)) return;
            result.Add(new Int4Candidate(role, linear, Problem(linear)));
        }
        foreach (var block in structure.Blocks)
        {
            string b = $"block{block.Index}";
            AddAttention(b + ".attention", block.Attention, Add);
            if (block.CrossAttention is { } cross) AddAttention(b + ".cross-attention", cross.Attention, Add);
            if (block.Ffn is { } ffn)
            {
                Add(ffn.Gate is { } g && g.Node == ffn.Up.Node ? b + ".ffn.gate-up" : b + ".ffn.gate", ffn.Gate);
                Add(ffn.Kind == FfnKind.Glu ? b + ".ffn.up" : b + ".ffn.fc1", ffn.Up);
                Add(ffn.Kind == FfnKind.Glu ? b + ".ffn.down" : b + ".ffn.fc2", ffn.Down);
            }
            int i = 0;
            foreach (var linear in block.Mixer?.Linears ?? []) Add($"{b}.mixer.linear{i++}", linear);
            i = 0;
            foreach (var linear in block.OpaqueFfn?.Linears ?? []) Add($"{b}.ffn.linear{i++}", linear);
        }
        if (structure.LmHead is { } head)
        {
            if (includeLmHead) Add("lm-head", head);
            else if (seen.Add(head.Node)) result.Add(new Int4Candidate("lm-head", head, "the LM head is kept in float unless asked (include the LM head)"));
        }
        return result;
    }

    private static void AddAttention(string prefix, AttentionRole? attention, Action<string, LinearRole?> add)
    {
        if (attention is null) return;
        add(prefix + ".qkv", attention.PackedQkv);
        add(prefix + ".q", attention.Query);
        add(prefix + ".k", attention.Key);
        add(prefix + ".v", attention.ValueProjection);
        add(prefix + ".output-gate", attention.OutputGate?.Linear);
        add(prefix + ".q-down", attention.LowRank?.QueryDown);
        add(prefix + ".kv-down", attention.LowRank?.KvDown);
        add(prefix + ".o", attention.Output);
    }

    /// <summary>Why <paramref name="linear"/> cannot be quantized; null when it can.</summary>
    public static string? Problem(LinearRole linear)
    {
        if (linear.Quantized) return $"already quantized ({linear.Form.Name()})";
        if (linear.Form is not (LinearForm.MatMul or LinearForm.Gemm)) return $"a {linear.Form.Name()} linear (the weights are an input of a fused op)";
        if (linear.Selection is not null) return "the weight is one slice of a stack chosen at run time";
        if (WeightData(linear) is not { } data) return $"the weight '{linear.Weight.Name}' is not a constant";
        if (data.Dims.Count != 2) return $"the weight '{linear.Weight.Name}' is not 2-D";
        if (!WeightReader.Supports(data.DataType)) return $"the weight '{linear.Weight.Name}' is {data.DataType.OnnxName()}, not a float type";
        if (WeightSlot(linear) is null) return $"no node of the linear reads '{linear.Weight.Name}' directly";
        if (linear.Node.Is("Gemm"))
        {
            if (linear.Node.GetInt("transA", 0) != 0) return "Gemm with transA = 1";
        }
        return null;
    }

    public static Tensor? WeightData(LinearRole linear) => ConstantResolver.Resolve(linear.Weight)?.Tensor;

    /// <summary>The node input that reads the stored weight (the linear's node, or the first Transpose/Cast of its path).</summary>
    public static (Node Node, int Input)? WeightSlot(LinearRole linear)
    {
        foreach (var node in linear.WeightPath.Append(linear.Node))
            for (int i = 0; i < node.Inputs.Count; i++)
                if (node.Inputs[i] == linear.Weight) return (node, i);
        return null;
    }

    /// <summary>The element type the linear computes in: the type a Cast on the weight's path converts to, else the
    /// weight's own.</summary>
    public static TensorDataType ComputeType(LinearRole linear, Tensor data)
    {
        var type = data.DataType;
        foreach (var node in linear.WeightPath)
            if (node.Is("Cast")) type = (TensorDataType)node.GetInt("to", (long)type);
        return type;
    }
}

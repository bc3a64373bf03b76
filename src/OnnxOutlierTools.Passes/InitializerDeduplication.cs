using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Passes;

/// <summary>Merges initializers of one graph that hold the same data (same element type, same dims,
/// same bytes): every use of a later copy is pointed at the first one, and the copy is removed. Exporters
/// write a constant once per use (torch.onnx's shape and scalar constants, tied weights saved twice);
/// merging them shrinks the file and leaves one value for a later pass to edit. Bytes are compared in
/// full, never by hash alone. Kept (reported as skipped): initializers that are also graph inputs (a
/// caller may feed them, so they are not constants) or graph outputs (they keep their name), string
/// tensors, and tensors above <see cref="MaxBytes"/> (not read at all).</summary>
public sealed class InitializerDeduplication : GraphPass
{
    public const string MergedInitializers = "merged-initializers";

    /// <param name="maxBytes">Initializers larger than this are left alone (default 1 MiB: constants, norms and
    /// biases, not weight matrices; their bytes are read to compare them).</param>
    public InitializerDeduplication(long maxBytes = 1 << 20) : base("initializer-deduplication", rules: [MergedInitializers])
    {
        if (maxBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, "the size limit must be positive");
        MaxBytes = maxBytes;
    }

    public long MaxBytes { get; }

    protected override void RunOnGraph(Graph graph, PassContext context, PassRecorder recorder)
    {
        // Group candidates by type, dims and a content hash; confirm with a full byte comparison.
        var groups = new Dictionary<(TensorDataType, string, int), List<Value>>();
        var fed = new List<Value>();
        var removed = new HashSet<Value>();
        foreach (var init in graph.Initializers.ToList())
        {
            var tensor = init.ConstValue;
            if (tensor is null || init.Uses.Count == 0) continue;
            if (tensor.DataType == TensorDataType.String || tensor.ByteLength > MaxBytes) continue;
            // A graph input's initializer is only a default: never a copy to merge, never the one kept.
            if (init.IsGraphInput) { fed.Add(init); continue; }
            var list = Group(groups, tensor);
            var keep = list.FirstOrDefault(k => k.ConstValue!.Bytes.SequenceEqual(tensor.Bytes));
            if (keep is null) list.Add(init);
            else if (init.IsGraphOutput) recorder.Skip(MergedInitializers, $"equal to '{keep.Name}' but also a graph output (it keeps its name)", graph, init.Name);
            else
            {
                init.ReplaceAllUsesWith(keep);
                graph.RemoveInitializer(init);
                removed.Add(init);
                recorder.Count(MergedInitializers);
            }
        }
        foreach (var init in fed)
            if (Group(groups, init.ConstValue!).FirstOrDefault(k => k.ConstValue!.Bytes.SequenceEqual(init.ConstValue!.Bytes)) is { } equal)
                recorder.Skip(MergedInitializers, $"equal to '{equal.Name}' but also a graph input (a caller may feed it)", graph, init.Name);
        if (removed.Count > 0) graph.ValueInfos.RemoveAll(removed.Contains);
    }

    private static List<Value> Group(Dictionary<(TensorDataType, string, int), List<Value>> groups, Tensor tensor)
    {
        var key = (tensor.DataType, string.Join(",", tensor.Dims), Hash(tensor.Bytes));
        if (!groups.TryGetValue(key, out var list)) groups[key] = list = [];
        return list;
    }

    private static int Hash(ReadOnlySpan<byte> bytes)
    {
        var hash = new HashCode();
        hash.AddBytes(bytes);
        return hash.ToHashCode();
    }
}

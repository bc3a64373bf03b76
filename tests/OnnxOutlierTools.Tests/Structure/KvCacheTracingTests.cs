using OnnxOutlierTools.IO;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Rules;
using OnnxOutlierTools.Tensors;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Present KV outputs found however many re-layouts an exporter puts between the attention's keys and the graph
/// output (GLM's MLA export: Transpose, Reshape, Concat with the indexer key, Unsqueeze), within a bound, nearest first.</summary>
public class KvCacheTracingTests
{
    [Fact]
    public void Glm52_PresentKeyAndValueOfEveryLayer()
    {
        using var model = ModelReader.Load(Fixtures.Path("exports-modern", "glm52-mla-moe-int4-mobius", "model.onnx"));
        var result = StructureRecognizer.Recognize(model);
        foreach (var blk in result.Structure!.Blocks)
        {
            var c = blk.Attention!.Cache!;
            Assert.Equal(($"past_key_values.{blk.Index}.key", $"past_key_values.{blk.Index}.value", $"present.{blk.Index}.key", $"present.{blk.Index}.value"),
                (c.PastKey?.Name, c.PastValue?.Name, c.PresentKey?.Name, c.PresentValue?.Name));
            Assert.False(c.Stacked);
        }
        Assert.DoesNotContain(StructureReport.ToText(result, explain: false).Split('\n'), l => l.StartsWith("  kv cache", StringComparison.Ordinal) && l.Contains(" -/", StringComparison.Ordinal));
    }

    private static (GraphBuilder B, Value Start) Chain(int layoutOps, string? computeOp = null)
    {
        var b = new GraphBuilder();
        var x = b.Input("k", TensorDataType.Float, 2, 3);
        var v = x;
        for (int i = 0; i < layoutOps; i++) v = b.Node("Transpose", [v], [Attr.Ints("perm", 1, 0)])[0];
        if (computeOp is not null) v = b.Op(computeOp, v, v);
        b.Output(b.Op("Identity", v), TensorDataType.Float, layoutOps % 2 == 0 ? 2 : 3, layoutOps % 2 == 0 ? 3 : 2);
        return (b, x);
    }

    [Theory]
    [InlineData(3)]
    [InlineData(6)]
    public void ReachableOutputs_ThroughLayoutOps_FindsThePresent(int layoutOps)
    {
        var (b, start) = Chain(layoutOps);
        Assert.Single(GraphWalk.ReachableOutputs(start));
        Assert.Same(b.Graph.Outputs[0], GraphWalk.ReachableOutputs(start).Single());
    }

    [Fact]
    public void ReachableOutputs_ThroughAComputeOp_IsNone()
    {
        // Near miss: a Mul mixes the tensor with something; what comes out is not the cache.
        var (_, start) = Chain(2, "Mul");
        Assert.Empty(GraphWalk.ReachableOutputs(start));
    }

    [Fact]
    public void ReachableOutputs_IsBounded_AndNearestFirst()
    {
        var (_, far) = Chain(12);
        Assert.Empty(GraphWalk.ReachableOutputs(far)); // 13 ops away: past the bound of 8
        var b = new GraphBuilder();
        var x = b.Input("k", TensorDataType.Float, 2, 3);
        var deep = b.Op("Identity", b.Op("Identity", b.Op("Identity", x)));
        b.Output(deep, TensorDataType.Float, 2, 3);
        var near = b.Output(b.Op("Identity", x), TensorDataType.Float, 2, 3);
        Assert.Equal([near, deep], GraphWalk.ReachableOutputs(x).ToList());
    }
}

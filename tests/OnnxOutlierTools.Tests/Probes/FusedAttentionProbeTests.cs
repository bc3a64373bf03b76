using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Tests.Import;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>Fused graphs: the genai GroupQueryAttention flavour of stories260K (skip-norm sums materialized, attention
/// mass from the side subgraph) and the fp16 MultiHeadAttention fixture (reductions in fp32 over fp16 tensors).</summary>
public sealed class FusedAttentionProbeTests
{
    private static readonly ProbeSettings Settings = new() { TopK = 16, AttentionPositions = 4, AboveThreshold = 1f };

    [Fact]
    public void GenAiGqa_Statistics_And_SideSubgraphMass_MatchHostFloat64_AndTheDecomposedSoftmax()
    {
        using var temp = new TempFolder("probe-gqa");
        string gqa = Build(temp, LlamaOnnxFlavour.GenAiGqa);
        string decomposed = Build(temp, LlamaOnnxFlavour.Decomposed);
        const int batch = 2, seq = 9;
        var inputs = new InputSynthesisOptions
        {
            IdUpperBound = 512,
            Dims = new Dictionary<string, long> { ["batch_size"] = batch, ["sequence_length"] = seq, ["total_sequence_length"] = seq, ["past_sequence_length"] = 0 },
        };
        var run = ProbeHarness.ProbeAndRun(gqa, temp, inputs, Settings, (_, handle) => handle.Graph.Nodes
            .Where(n => n.OpType == "GroupQueryAttention").SelectMany(n => new[] { n.Input(0)!.Name, n.Input(1)!.Name }));

        // The last block's output is the final skip norm's residual sum, which the model never emitted.
        var last = run.Manifest.Points.Single(p => p.Id == "block4.residual");
        Assert.Equal("probe.block4.residual.tensor", last.Tensor);
        Assert.Equal(5, run.Manifest.Points.Count(p => p.Kind == ProbeKind.ResidualSum));
        foreach (var point in run.Manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities))
            HostStatistics.AssertActivation(run, point, Settings);

        var reference = ProbeHarness.ProbeAndRun(decomposed, new TempFolder("probe-gqa-ref"), inputs with
        {
            Dims = new Dictionary<string, long> { ["batch_size"] = batch, ["sequence_length"] = seq },
        }, Settings with { Kinds = [ProbeKind.AttentionProbabilities] });
        var attention = run.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities).ToList();
        Assert.Equal(5, attention.Count);
        using var gqaModel = ModelReader.Load(gqa, new LoadOptions { RequireExternalData = false });
        var cores = gqaModel.Graph.Nodes.Where(n => n.OpType == "GroupQueryAttention").ToList();
        for (int b = 0; b < attention.Count; b++)
        {
            var point = attention[b];
            Assert.Contains("side subgraph", point.Source);
            Assert.Contains("KV heads repeated 8/4", point.Source);
            Assert.Equal(8, point.Heads);
            var q = run[cores[b].Input(0)!.Name].ToDoubleArray();
            var k = run[cores[b].Input(1)!.Name].ToDoubleArray();
            var probabilities = HostAttention.Probabilities(q, k, batch, seq, seq, heads: 8, kvHeads: 4, headSize: 8, causal: true);
            var expected = HostStatistics.MassFromProbabilities(probabilities, batch, 8, seq, seq, Settings.AttentionPositions);
            var mass = HostStatistics.Floats(run, point, ProbeStatistic.AttentionMass);
            HostStatistics.AssertClose(expected, mass, 1e-4, point.Id + " vs float64 attention");
            // The same weights written out with a Softmax: its mass is an independent reference for the side subgraph.
            var decomposedPoint = reference.Manifest.Points.Single(p => p.Id == point.Id);
            HostStatistics.AssertClose(HostStatistics.Floats(reference, decomposedPoint, ProbeStatistic.AttentionMass).Select(v => (double)v).ToArray(), mass, 1e-4, point.Id + " vs decomposed softmax");
        }
    }

    [Fact]
    public void Fp16MultiHeadAttention_ReducesInFloat32_AndMatchesHost()
    {
        using var temp = new TempFolder("probe-fp16");
        const int seq = 5;
        var inputs = new InputSynthesisOptions
        {
            IdUpperBound = 32000,
            Dims = new Dictionary<string, long> { ["batch_size"] = 1, ["sequence_length"] = seq, ["past_sequence_length"] = 0, ["total_sequence_length"] = seq },
        };
        var run = ProbeHarness.ProbeAndRun(Fixtures.Export("llama-genai-mha-fp16", "model.onnx"), temp, inputs, Settings, (_, handle) => handle.Graph.Nodes
            .Where(n => n.OpType == "MultiHeadAttention").SelectMany(n => new[] { n.Input(0)!.Name, n.Input(1)!.Name }));
        foreach (var point in run.Manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities))
        {
            Assert.Equal(OnnxOutlierTools.Tensors.TensorDataType.Float16, run[point.Tensor].ElementType);
            HostStatistics.AssertActivation(run, point, Settings);
        }
        using var model = ModelReader.Load(Fixtures.Export("llama-genai-mha-fp16", "model.onnx"), new LoadOptions { RequireExternalData = false });
        var cores = model.Graph.Nodes.Where(n => n.OpType == "MultiHeadAttention").ToList();
        var attention = run.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities).ToList();
        Assert.Equal(2, attention.Count);
        for (int b = 0; b < attention.Count; b++)
        {
            var q = run[cores[b].Input(0)!.Name].ToDoubleArray();
            var k = run[cores[b].Input(1)!.Name].ToDoubleArray();
            var probabilities = HostAttention.Probabilities(q, k, 1, seq, seq, heads: 1, kvHeads: 1, headSize: 16, causal: true);
            var expected = HostStatistics.MassFromProbabilities(probabilities, 1, 1, seq, seq, Settings.AttentionPositions);
            HostStatistics.AssertClose(expected, HostStatistics.Floats(run, attention[b], ProbeStatistic.AttentionMass), 1e-4, attention[b].Id);
        }
    }

    [Fact]
    public void GroupQueryAttentionWithRotaryInside_MassMatchesHostRotaryAndTheOpsOwnKeys()
    {
        using var temp = new TempFolder("probe-gqa-rotary");
        const int batch = 2, seq = 6, half = 8, headSize = 16;
        var inputs = new InputSynthesisOptions
        {
            IdUpperBound = 32000,
            Dims = new Dictionary<string, long> { ["batch_size"] = batch, ["sequence_length"] = seq, ["total_sequence_length"] = seq, ["past_sequence_length"] = 0 },
        };
        string path = Fixtures.Export("llama-genai-gqa-fp32", "model.onnx");
        var run = ProbeHarness.ProbeAndRun(path, temp, inputs, Settings, (_, handle) => handle.Graph.Nodes
            .Where(n => n.OpType == "GroupQueryAttention").Select(n => n.Input(0)!.Name));
        using var model = ModelReader.Load(path);
        var cos = model.Graph.FindInitializer("cos_cache")!.ConstValue!.ToSingleArray();
        var sin = model.Graph.FindInitializer("sin_cache")!.ConstValue!.ToSingleArray();
        var cores = model.Graph.Nodes.Where(n => n.OpType == "GroupQueryAttention").ToList();
        var attention = run.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities).ToList();
        Assert.Equal(2, attention.Count);
        Assert.Empty(run.Manifest.Skipped);
        for (int b = 0; b < attention.Count; b++)
        {
            Assert.Contains("as do_rotary=1 does inside the op", attention[b].Source);
            var packed = run[cores[b].Input(0)!.Name].ToDoubleArray();   // [B, S, q 16 | k 16 | v 16]
            var presentKey = run[cores[b].Output(1)!.Name].ToDoubleArray(); // [B, 1, S, 16]: the op's rotated keys
            var q = new double[batch * seq * headSize];
            var k = new double[batch * seq * headSize];
            for (int t = 0; t < batch * seq; t++)
            {
                int position = t % seq;
                for (int i = 0; i < half; i++)
                {
                    double c = cos[position * half + i], s = sin[position * half + i];
                    foreach (var (target, offset) in new[] { (q, 0), (k, headSize) })
                    {
                        double x1 = packed[t * 3 * headSize + offset + i], x2 = packed[t * 3 * headSize + offset + half + i];
                        target[t * headSize + i] = x1 * c - x2 * s;
                        target[t * headSize + half + i] = x2 * c + x1 * s;
                    }
                }
            }
            // The host rotary is the op's own: its keys equal present.{i}.key.
            HostStatistics.AssertClose(k, presentKey.Select(v => (float)v).ToArray(), 1e-5, $"layer {b} host-rotated keys vs present key");
            var probabilities = HostAttention.Probabilities(q, presentKey, batch, seq, seq, heads: 1, kvHeads: 1, headSize: headSize, causal: true);
            var expected = HostStatistics.MassFromProbabilities(probabilities, batch, 1, seq, seq, Settings.AttentionPositions);
            HostStatistics.AssertClose(expected, HostStatistics.Floats(run, attention[b], ProbeStatistic.AttentionMass), 1e-4, attention[b].Id);
        }
    }

    [Fact]
    public void MicrosoftAttentionWithPast_MassMatchesHostFromItsInputWeightsAndPresentKeys()
    {
        using var temp = new TempFolder("probe-ms-attention");
        var recipe = OnnxOutlierTools.Tests.Runtime.FixtureRecipes.Get("gpt2-ort-fused-fp32"); // seq 4 after a past of 3
        const int seq = 4, total = 7, heads = 4, headSize = 8, hidden = 32;
        var run = ProbeHarness.ProbeAndRun(recipe.ModelPath, temp, recipe.Inputs, Settings, (_, handle) => handle.Graph.Nodes
            .Where(n => n.Is("Attention", "com.microsoft")).Select(n => n.Input(0)!.Name));
        using var model = ModelReader.Load(recipe.ModelPath);
        var cores = model.Graph.Nodes.Where(n => n.Is("Attention", "com.microsoft")).ToList();
        var attention = run.Manifest.Points.Where(p => p.Kind == ProbeKind.AttentionProbabilities).ToList();
        Assert.Equal(5, attention.Count);
        Assert.Empty(run.Manifest.Skipped);
        for (int b = 0; b < attention.Count; b++)
        {
            Assert.Contains("past keys first", attention[b].Source);
            var x = run[cores[b].Input(0)!.Name].ToDoubleArray();                                   // [1, S, 32]
            var w = model.Graph.FindInitializer(cores[b].Input(1)!.Name)!.ConstValue!.ToSingleArray(); // [32, 96]
            var bias = model.Graph.FindInitializer(cores[b].Input(2)!.Name)!.ConstValue!.ToSingleArray();
            var q = new double[seq * hidden];
            for (int t = 0; t < seq; t++)
                for (int o = 0; o < hidden; o++)
                {
                    double acc = bias[o];
                    for (int i = 0; i < hidden; i++) acc += x[t * hidden + i] * w[i * 3 * hidden + o];
                    q[t * hidden + o] = acc;
                }
            // The op's own keys, past included: present[0] is [B, H, T, D]; as [B, T, H*D] for the host attention.
            var present = run[cores[b].Output(1)!.Name].ToDoubleArray();
            var k = new double[total * hidden];
            for (int h = 0; h < heads; h++)
                for (int t = 0; t < total; t++)
                    for (int d = 0; d < headSize; d++)
                        k[t * hidden + h * headSize + d] = present[(h * total + t) * headSize + d];
            var probabilities = HostAttention.Probabilities(q, k, 1, seq, total, heads, heads, headSize, causal: true);
            var expected = HostStatistics.MassFromProbabilities(probabilities, 1, heads, seq, total, Settings.AttentionPositions);
            HostStatistics.AssertClose(expected, HostStatistics.Floats(run, attention[b], ProbeStatistic.AttentionMass), 1e-4, attention[b].Id);
        }
    }

    private static string Build(TempFolder temp, LlamaOnnxFlavour flavour)
    {
        using var model = LlamaOnnxBuilder.Build(Stories260K.Weights, new LlamaOnnxOptions { Flavour = flavour });
        string path = temp.Path(flavour.ToString(), "model.onnx");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        ModelWriter.Save(model, path, new SaveOptions { Layout = TensorLayout.External, Durable = false });
        return path;
    }
}

/// <summary>Scaled dot-product attention probabilities in float64 from q [B, S, H*D] and k [B, T, kvH*D] (query head h
/// reads KV head h / (H / kvH)); causal: query i sees keys j &lt;= i + T - S.</summary>
public static class HostAttention
{
    public static double[] Probabilities(double[] q, double[] k, int batch, int s, int t, int heads, int kvHeads, int headSize, bool causal)
    {
        var p = new double[batch * heads * s * t];
        double scale = 1 / Math.Sqrt(headSize);
        int group = heads / kvHeads;
        for (int b = 0; b < batch; b++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < s; i++)
                {
                    var scores = new double[t];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < t; j++)
                    {
                        if (causal && j > i + t - s) { scores[j] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int d = 0; d < headSize; d++)
                            dot += q[(b * s + i) * heads * headSize + h * headSize + d] * k[(b * t + j) * kvHeads * headSize + h / group * headSize + d];
                        scores[j] = dot * scale;
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < t; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j < t; j++) p[((b * heads + h) * s + i) * t + j] = scores[j] / sum;
                }
        return p;
    }
}

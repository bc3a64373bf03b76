using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Ir;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Tests.IO;
using OnnxOutlierTools.Tests.Runtime;

namespace OnnxOutlierTools.Tests.Probes;

/// <summary>The probe pass on every fixture flavour: the probed model runs, its original outputs are unchanged (same
/// ORT run, optimizations off, compared bit for bit), every node it added carries the probe provenance, every
/// statistic is where the manifest says with the type the decoder expects, and what cannot be probed is said.</summary>
public sealed class ProbePassTests
{
    public static TheoryData<string> Flavours
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var recipe in FixtureRecipes.All.Where(r => r.Name != "gpt2-ort-beamsearch")) data.Add(recipe.Name);
            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Flavours))]
    public void Probe_Fixture_RunsAndKeepsOriginalOutputs(string flavour)
    {
        var recipe = FixtureRecipes.Get(flavour);
        using var temp = new TempFolder("probe-fixture");
        string probed = temp.Path("model.onnx");
        ProbeManifest manifest;
        int nodesBefore;
        using (var model = ModelReader.Load(recipe.ModelPath))
        {
            nodesBefore = model.Graph.Nodes.Count;
            var structure = StructureRecognizer.Recognize(model).Structure!;
            var pass = new ProbePass(structure, new ProbeSettings());
            var result = model.Apply(pass);
            manifest = pass.Manifest!;
            Assert.True(result.Changed);
            Assert.Equal(manifest.Points.Count, result.Counts.Values.Sum());
            Assert.Equal(manifest.Skipped.Count, result.Skipped.Count);
            var added = model.Graph.Nodes.Skip(nodesBefore).ToList();
            Assert.NotEmpty(added);
            Assert.All(added, n => Assert.Equal(ProbeNames.Pass, NodeOrigin.Of(n)?.Pass));
            Assert.All(added, n => Assert.Contains(NodeOrigin.Of(n)!.Rule, ProbeNames.AllRules));
            Assert.Equal(manifest.OriginalOutputs, model.Graph.Outputs.Take(manifest.OriginalOutputs.Count).Select(o => o.Name));
            Assert.Equal(manifest.OriginalOutputs.Count + manifest.Points.Sum(p => p.Outputs.Count), model.Graph.Outputs.Count);
            ModelWriter.Save(model, probed, new SaveOptions { Durable = false });
        }
        Assert.NotEmpty(manifest.Points);

        using var original = SessionFactory.Open(recipe.ModelPath, SessionSettings.CpuUnoptimized);
        var feeds = original.SynthesizeInputs(recipe.Inputs);
        var expected = original.Run(feeds);
        using var session = SessionFactory.Open(probed, SessionSettings.CpuUnoptimized);
        using var outputs = session.RunWithoutCopy(feeds);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Name, outputs[i].Name);
            Assert.Equal(expected[i].Dims, outputs[i].Dims);
            if (expected[i].ElementType != OnnxOutlierTools.Tensors.TensorDataType.Float16)
            {
                Assert.True(expected[i].Bytes.SequenceEqual(outputs[i].Bytes), $"{flavour}: output '{expected[i].Name}' changed by probing");
                continue;
            }
            // ORT's CPU runs fp16 ops in fp32 and removes fp32 -> fp16 -> fp32 Cast pairs; a probe reading a value changes
            // which pairs it removes, so fp16 roundings differ and carry on through later blocks: an fp16 output agrees
            // to 2^-8 of its largest magnitude (a few fp16 steps), not bit for bit.
            var a = expected[i].ToDoubleArray();
            var b = outputs[i].ToSingleArray();
            double scale = a.Max(Math.Abs), worst = 0;
            for (int j = 0; j < a.Length; j++) worst = Math.Max(worst, Math.Abs(a[j] - b[j]));
            Assert.True(worst <= scale / 256, $"{flavour}: fp16 output '{expected[i].Name}' moved by {worst:E3} (largest |x| {scale:E3})");
        }
        // With ORT's graph optimizations on (as calibration runs it) the probed model runs too, the statistics alike.
        using (var optimized = SessionFactory.Open(probed, new SessionSettings { Device = ExecutionDevice.Cpu }))
        {
            var maxima = manifest.Points.Where(p => p.Kind != ProbeKind.AttentionProbabilities).Select(p => p.Outputs[ProbeStatistic.ChannelMax]).ToList();
            var results = optimized.Run(feeds, maxima);
            for (int i = 0; i < maxima.Count; i++)
            {
                var unoptimized = outputs[maxima[i]].ToSingleArray();
                var fast = results[i].ToSingleArray();
                for (int j = 0; j < fast.Length; j++)
                    Assert.True(Math.Abs(fast[j] - unoptimized[j]) <= 1e-3 * Math.Max(1, Math.Abs(unoptimized[j])), $"{flavour}: {maxima[i]}[{j}] is {fast[j]} optimized, {unoptimized[j]} not");
            }
        }
        // The decoder reads every point (types and shapes as it expects them).
        var statistics = new CalibrationStatistics(manifest);
        var ids = feeds.FirstOrDefault(f => InputSynthesizer.Classify(new InputSpec(f.Name, f.ElementType, [])) == InputRole.Ids && f.Dims.Count == 2);
        int batch = ids is null ? 1 : (int)ids.Dims[0], seq = ids is null ? 1 : (int)ids.Dims[1];
        var tokens = new BatchTokens(Enumerable.Range(0, batch).ToArray(), seq, ids?.ToInt64Array().Select(v => (int)v).ToArray() ?? [0]);
        if (ids is not null && !flavour.StartsWith("gpt2-torch-past", StringComparison.Ordinal))
        {
            ProbeOutputDecoder.Merge(statistics, outputs, tokens);
            Assert.Equal(manifest.Points.Count, statistics.Points.Count);
        }
    }

    [Fact]
    public void Probe_SaysWhichAttentionCannotBeMeasured()
    {
        static IReadOnlyList<SkippedProbe> Skipped(string flavour, string file)
        {
            using var model = ModelReader.Load(Fixtures.Export(flavour, file), new LoadOptions { RequireExternalData = false });
            var structure = StructureRecognizer.Recognize(model).Structure!;
            var pass = new ProbePass(structure);
            model.Apply(pass);
            return pass.Manifest!.Skipped;
        }
        Assert.Empty(Skipped("llama-genai-gqa-fp32", "model.onnx")); // do_rotary=1: the side subgraph repeats the rotary
        Assert.Empty(Skipped("gpt2-ort-fused-fp32", "past.onnx")); // com.microsoft Attention: q/k from its input and weights
        var mobius = Skipped("llama-mobius-opset24", "model.onnx");
        Assert.Equal(2, mobius.Count);
        Assert.All(mobius, s => Assert.Contains("static cache", s.Reason));
        Assert.Empty(Skipped("llama-genai-mha-fp16", "model.onnx"));
    }

    [Fact]
    public void Probe_KindsAndTensors_AreWhatTheUserPicked()
    {
        using var model = ModelReader.Load(Path.Combine(ProbeStatisticsTests.RepoRoot, "onnx-models", "tiny-llama", "model.onnx"));
        var structure = StructureRecognizer.Recognize(model).Structure!;
        var settings = ProbeSelection.Apply(new ProbeSettings(), ["down-input,/model/layers.0/mlp/act_fn/Sigmoid_output_0"]);
        Assert.Equal([ProbeKind.DownInput], settings.Kinds);
        var pass = new ProbePass(structure, settings);
        var result = model.Apply(pass);
        Assert.Equal(["block0.down-input", "block1.down-input", "tensor:/model/layers.0/mlp/act_fn/Sigmoid_output_0"], pass.Manifest!.Points.Select(p => p.Id));
        Assert.Equal(2, result.Count("down-input"));
        Assert.Equal(1, result.Count("tensor"));
        Assert.Equal(176, pass.Manifest.Points[0].Channels);
        Assert.Equal(["model.layers.0.mlp.down_proj.weight"], pass.Manifest.Points[0].ReadBy);
        Assert.Equal("probe.block0.down-input.channel-max", pass.Manifest.Points[0].Outputs[ProbeStatistic.ChannelMax]);

        using var again = ModelReader.Load(Path.Combine(ProbeStatisticsTests.RepoRoot, "onnx-models", "tiny-llama", "model.onnx"));
        var bad = new ProbePass(StructureRecognizer.Recognize(again).Structure!, new ProbeSettings { Tensors = ["no-such-tensor"] });
        var error = Assert.Throws<PassException>(() => again.Apply(bad));
        Assert.Contains("'no-such-tensor' (--probe) is neither a probe kind", error.Message);
    }

    [SkippableFact]
    public void ProbedModels_PassTheOnnxChecker()
    {
        Skip.If(OnnxPython.Executable is null, OnnxPython.UnavailableReason);
        using var temp = new TempFolder("probe-checker");
        var requests = new List<OnnxPython.Request>();
        foreach (var (source, name) in new[] { (Path.Combine(ProbeStatisticsTests.RepoRoot, "onnx-models", "tiny-llama", "model.onnx"), "tiny"), (MiniLm.ModelPath, "minilm") })
        {
            using var model = ModelReader.Load(source);
            model.Apply(new ProbePass(StructureRecognizer.Recognize(model).Structure!));
            string path = temp.Path(name, "model.onnx");
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            ModelWriter.Save(model, path, new SaveOptions { Durable = false });
            requests.Add(new OnnxPython.Request(path));
        }
        foreach (var verdict in OnnxPython.Check([.. requests])) Assert.True(verdict.Ok, verdict.ToString());
    }
}

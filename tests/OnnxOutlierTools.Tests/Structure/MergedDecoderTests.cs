using OnnxOutlierTools.Import;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Runtime;
using OnnxOutlierTools.Structure.Recognition;
using OnnxOutlierTools.Structure.Roles;
using OnnxOutlierTools.Tests.Cli;

namespace OnnxOutlierTools.Tests.Structure;

/// <summary>Optimum merged decoders (#7 item 6): an If on use_cache_branch with the decoder with past and without past as
/// branches, reading shared outer-scope initializers. The synthetic one runs in ONNX Runtime for both branch values (equal to
/// the standalone decoders) and is recognized with both branches side by side.</summary>
public class MergedDecoderTests
{
    private static readonly DecoderConfig Config = SyntheticDecoder.TinyConfig;

    private static List<TensorData> Inputs(long[] ids, int past, bool? useCache, IReadOnlyList<TensorData>? presents = null)
    {
        int S = ids.Length, total = past + S;
        var list = new List<TensorData>
        {
            TensorData.Create("input_ids", ids, 1, S),
            TensorData.Create("attention_mask", Enumerable.Repeat(1L, total).ToArray(), 1, total),
            TensorData.Create("position_ids", Enumerable.Range(past, S).Select(i => (long)i).ToArray(), 1, S),
        };
        for (int i = 0; i < Config.Layers; i++)
            foreach (var (kind, index) in new[] { ("key", 2 * i), ("value", 2 * i + 1) })
                list.Add(presents is null
                    ? TensorData.Create($"past_key_values.{i}.{kind}", Array.Empty<float>(), 1, Config.KvHeads, 0, Config.HeadSize)
                    : presents[index].WithName($"past_key_values.{i}.{kind}"));
        if (useCache is bool u) list.Add(TensorData.Create(MergedDecoder.UseCacheBranch, new[] { u }, 1));
        return list;
    }

    private static string[] PresentNames => Enumerable.Range(0, Config.Layers).SelectMany(i => new[] { $"present.{i}.key", $"present.{i}.value" }).ToArray();

    [Fact]
    public void MergedDecoder_BothBranchValues_EqualTheStandaloneDecoders()
    {
        using var dir = new TempFolder("merged");
        var weights = SyntheticDecoder.Create(Config, SyntheticDecoder.TinySeed);
        using (var merged = MergedDecoder.Build(weights)) ModelWriter.Save(merged, dir.Path("merged.onnx"));
        using (var noPast = LlamaOnnxBuilder.Build(weights)) ModelWriter.Save(noPast, dir.Path("decoder.onnx"));
        using (var pastModel = LlamaOnnxBuilder.Build(weights, new LlamaOnnxOptions { Flavour = LlamaOnnxFlavour.DecomposedWithPast }))
            ModelWriter.Save(pastModel, dir.Path("decoder_with_past.onnx"));
        var settings = SessionSettings.CpuUnoptimized;
        long[] prompt = [1, 17, 42, 255], next = [3, 99];

        // use_cache_branch = false: the no-past decoder (past inputs empty and unused).
        var first = ModelRunner.Run(dir.Path("merged.onnx"), Inputs(prompt, 0, false), settings, ["logits", .. PresentNames]);
        var reference = ModelRunner.Run(dir.Path("decoder.onnx"), Inputs(prompt, 0, null).Take(3), settings, ["logits"])[0];
        Assert.Equal(reference.ToSingleArray(), first[0].ToSingleArray());
        Assert.Equal([1L, Config.KvHeads, prompt.Length, Config.HeadSize], first[1].Dims);

        // use_cache_branch = true: the with-past decoder, fed the presents of the first step.
        var presents = first.Skip(1).ToList();
        var second = ModelRunner.Run(dir.Path("merged.onnx"), Inputs(next, prompt.Length, true, presents), settings, ["logits"])[0];
        var withPast = ModelRunner.Run(dir.Path("decoder_with_past.onnx"), Inputs(next, prompt.Length, null, presents), settings, ["logits"])[0];
        Assert.Equal(withPast.ToSingleArray(), second.ToSingleArray());

        // And the cached step agrees with running the whole sequence without cache (last two positions).
        var full = ModelRunner.Run(dir.Path("decoder.onnx"), Inputs([.. prompt, .. next], 0, null).Take(3), settings, ["logits"])[0].ToSingleArray();
        var tail = full.AsSpan(prompt.Length * Config.VocabSize).ToArray();
        Assert.Equal(tail.Length, second.ElementCount);
        var got = second.ToSingleArray();
        for (int i = 0; i < tail.Length; i++) Assert.True(Math.Abs(tail[i] - got[i]) <= 1e-4f, $"logit {i}: {got[i]} vs {tail[i]}");
    }

    [Fact]
    public void MergedDecoder_RecognizesBothBranchesWithSharedWeights()
    {
        var weights = SyntheticDecoder.Create(Config, SyntheticDecoder.TinySeed);
        using var model = MergedDecoder.Build(weights);
        var result = StructureRecognizer.Recognize(model);
        var s = result.Structure!;
        Assert.NotNull(s.NestedIn);
        var m = s.Branches!;
        Assert.Equal(MergedDecoder.UseCacheBranch, m.Condition!.Name);
        Assert.Equal(["then_branch", "else_branch"], m.Branches.Select(b => b.Attribute).ToArray());
        Assert.True(m.Branches[0].HasCache);
        Assert.False(m.Branches[1].HasCache);
        Assert.All(m.Branches, b => Assert.Equal(Config.Layers, b.Structure.Blocks.Count));
        Assert.True(m.SameLayout);
        Assert.Equal(Config.Layers, m.Blocks.Count);
        // Every role weight is one outer-scope initializer read by both branches: an edit applies to both.
        Assert.All(m.Weights, w => Assert.True(w.Shared, $"{w.Role} is shared"));
        Assert.Contains(m.Weights, w => w.Role == new RoleUse(0, "attention.q.weight"));
        Assert.Contains(m.Weights, w => w.Role == new RoleUse(null, "lmHead.weight"));
        Assert.Contains(m.Weights, w => w.Role == new RoleUse(null, "embedding.tokenTable"));
        // The branches read the outer graph's inputs by name.
        Assert.Equal("input_ids", s.Inputs.InputIds!.Name);
        Assert.Equal("position_ids", s.Inputs.PositionIds!.Name);
        Assert.All(m.Weights, w => Assert.True(w.Initializers[0]!.Graph.ParentNode is null, $"{w.Role}: an initializer of the outer graph"));
        Assert.Contains("merged branches", StructureReport.ToText(result, explain: false));
    }

    [Fact]
    public void InspectLayersJson_MergedDecoder_ListsBranches()
    {
        using var dir = new TempFolder("merged");
        using (var merged = MergedDecoder.Build(SyntheticDecoder.Create(Config, SyntheticDecoder.TinySeed))) ModelWriter.Save(merged, dir.Path("merged.onnx"));
        var r = CliRunner.Run("inspect", dir.Path("merged.onnx"), "--layers", "--json");
        Assert.Equal(0, r.ExitCode);
        var b = System.Text.Json.JsonDocument.Parse(r.Stdout).RootElement.GetProperty("layers").GetProperty("branches");
        Assert.Equal(2, b.GetProperty("branches").GetArrayLength());
        Assert.Equal(0, b.GetProperty("separateWeights").GetInt32());
        Assert.Equal(Config.Layers, b.GetProperty("blocks").GetArrayLength());
    }
}

using Microsoft.ML.OnnxRuntime;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Tests.Runtime;

public sealed class SessionFactoryTests : IDisposable
{
    private readonly TempFolder _temp = new("sessions");

    private static string SmallModel => FixtureRecipes.Get("distilbert-optimum").ModelPath;

    /// <summary>Null when the CUDA provider can be appended here, else ORT's reason.</summary>
    private static string? CudaProblem()
    {
        try
        {
            using var options = SessionFactory.CreateOptions(new SessionSettings(), ExecutionDevice.Cuda);
            return null;
        }
        catch (RuntimeSetupException ex)
        {
            return ex.Message;
        }
    }

    [Fact]
    public void Open_Auto_UsesCudaOrFallsBackToCpuWithOneLineNote()
    {
        var notes = new List<string>();
        using var session = SessionFactory.Open(SmallModel, new SessionSettings { OnDeviceNote = notes.Add });
        if (CudaProblem() is null)
        {
            Assert.Equal(ExecutionDevice.Cuda, session.Device);
            Assert.Null(session.DeviceNote);
            Assert.Empty(notes);
            return;
        }
        Assert.Equal(ExecutionDevice.Cpu, session.Device);
        string note = Assert.Single(notes);
        Assert.Equal(note, session.DeviceNote);
        Assert.DoesNotContain('\n', note);
        Assert.StartsWith("CUDA execution provider unavailable: ", note);
        Assert.EndsWith("; running on CPU", note);
    }

    [SkippableFact]
    public void Open_CudaWithoutCudaLibraries_ThrowsOneLineRuntimeSetupException()
    {
        Skip.If(CudaProblem() is null, "the CUDA execution provider loads on this machine");
        var ex = Assert.Throws<RuntimeSetupException>(() => SessionFactory.Open(SmallModel, new SessionSettings { Device = ExecutionDevice.Cuda }));
        Assert.StartsWith("CUDA execution provider unavailable: ", ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Open_Cpu_RunsWithoutNote()
    {
        var notes = new List<string>();
        using var session = SessionFactory.Open(SmallModel, new SessionSettings { Device = ExecutionDevice.Cpu, OnDeviceNote = notes.Add });
        Assert.Equal(ExecutionDevice.Cpu, session.Device);
        Assert.Null(session.DeviceNote);
        Assert.Empty(notes);
        Assert.Equal(["input_ids", "attention_mask"], session.Inputs.Select(i => i.Name));
        Assert.Equal(["logits"], session.OutputNames);
    }

    [Fact]
    public void Run_OptimizationLevels_AgreeClosely()
    {
        // Default settings optimize the graph (fusions may change rounding); the unoptimized run is the reference.
        var recipe = FixtureRecipes.Get("llama-torch-nopast");
        var (inputs, reference) = ReferenceRuns.Original(recipe.Name);
        var optimized = ModelRunner.Run(recipe.ModelPath, inputs,
            new SessionSettings { Device = ExecutionDevice.Cpu, Optimization = GraphOptimizationLevel.ORT_ENABLE_ALL });
        Assert.True(TensorComparison.AllClose(reference, optimized, 1e-4, 1e-4), TensorComparison.Compare(reference, optimized).ToString());
    }

    [Fact]
    public void Open_MissingFile_ThrowsRuntimeSetupException()
    {
        var ex = Assert.Throws<RuntimeSetupException>(() => SessionFactory.Open(_temp.Path("absent.onnx"), SessionSettings.CpuUnoptimized));
        Assert.Contains("file not found", ex.Message);
    }

    [Fact]
    public void Open_NotAModel_ThrowsOneLineRuntimeSetupException()
    {
        string path = _temp.Path("garbage.onnx");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8]);
        var ex = Assert.Throws<RuntimeSetupException>(() => SessionFactory.Open(path, SessionSettings.CpuUnoptimized));
        Assert.Contains(path, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void Run_WrongInputName_ThrowsModelRunException()
    {
        using var session = SessionFactory.Open(SmallModel, SessionSettings.CpuUnoptimized);
        var bogus = TensorData.Create("no_such_input", new long[] { 1 }, 1);
        var ex = Assert.Throws<ModelRunException>(() => session.Run([bogus]));
        Assert.DoesNotContain('\n', ex.Message);
    }

    public void Dispose() => _temp.Dispose();
}

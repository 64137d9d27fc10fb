# A small stand-in for the Vagrant API, written for labctl's tests (tests/test_untrusted_*.py):
# it lets real Ruby load a rendered Vagrantfile and records every setting and call, so a test can
# check that each lab.yaml value arrived as exactly one Ruby string, unchanged.
#   ruby -r ./vagrant_stub.rb -e 'load ARGV[0]; LabctlStub.dump' Vagrantfile
require "json"

module LabctlStub
  RECORDS = []

  def self.dump
    puts JSON.generate(RECORDS)
  end

  # Any chain of calls (config.vm.box = ..., node.vm.provider "x" do |p| ... end) is recorded as
  # [path, args]; a block receives a recorder for its own path.
  class Recorder < BasicObject
    def initialize(path)
      @path = path
    end

    def method_missing(name, *args, **kwargs, &block)
      path = @path.empty? ? name.to_s : "#{@path}.#{name}"
      values = args + (kwargs.empty? ? [] : [kwargs.transform_keys(&:to_s)])
      if name.to_s.end_with?("=")
        RECORDS << [path.chomp("="), values.first]
        return values.first
      end
      child = Recorder.new(path)
      RECORDS << [path, values] unless values.empty? && block.nil?
      block&.call(child)
      child
    end

    def respond_to_missing?(*)
      true
    end
  end
end

module Vagrant
  # The rendered Vagrantfile asks for Vagrant's version (box_architecture needs 2.4.0+); the stub
  # answers as a current Vagrant, so that branch is loaded too.
  VERSION = "2.4.9"

  def self.configure(version)
    LabctlStub::RECORDS << ["configure", [version]]
    yield LabctlStub::Recorder.new("config")
  end
end
